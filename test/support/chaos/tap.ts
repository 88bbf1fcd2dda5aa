/**
 * How a tap file runs a chaos suite: its private services for the whole file, one subtest per
 * scenario with the run's figures as TAP comments, and one assertion per checked property so a
 * failure names what broke (the details list every violation found).
 */
import t, { type Test } from 'tap';
import { describeViolations } from './history.js';
import type { ScenarioResult } from './scenario.js';
import { runSpec, startChaosServices, type Suite } from './suites.js';
import { testRunId } from '../env.js';

export async function chaosFile(suite: Suite, assert: (t: Test, r: ScenarioResult) => void): Promise<void> {
  const services = await startChaosServices(suite.mode);
  t.teardown(() => services.stop());
  t.comment(
    `private Cassandra started in ${services.cassandra.startMs} ms on ${services.cassandra.contactPoints.join(',')}` +
      (services.redis ? `; private Redis on ${services.redis.url}` : ''),
  );
  const keyspace = `chaos_${testRunId()}_${suite.mode}`;
  for (const spec of suite.scenarios) {
    const title = spec.mustFail ? `${spec.name}: the checker reports the acked messages it lost` : `${spec.name}: no acked message lost, none twice, every device in order`;
    t.test(title, async (t) => {
      const r = await runSpec(suite, spec, services, keyspace, (line) => t.comment(line));
      for (const line of r.summary.split('\n')) t.comment(line);
      if (spec.mustFail) assertCaught(t, r);
      else assert(t, r);
    });
  }
}

export function assertScenario(t: Test, r: ScenarioResult): void {
  const f = r.check.figures;
  const c = r.check.countByKind;
  const details = describeViolations(r.check) || 'none';
  t.ok(f.acked > 0, `messages were acked during the run (${f.acked} of ${f.sent})`);
  t.equal(f.lostAcked, 0, 'every acked message reached every member device');
  t.equal(f.duplicates, 0, 'no device was handed a message twice, and no send was stored twice');
  t.equal(f.orderViolations, 0, 'every device got each conversation in seq order without gaps');
  t.equal(f.conflicts + c['ack-inconsistent'], 0, 'one message per seq, and the same answer for the same cmid');
  t.equal(c['unbacked-sent'] + c['failed-but-stored'], 0, 'nothing was reported sent that the server had not stored, nothing failed that was stored');
  t.equal(c.phantom + c.corrupt, 0, 'every received message was submitted as received');
  t.equal(c['receipt-ahead'] + c['receipt-regress'], 0, 'receipts never claimed more than the device held, and never went back');
  t.equal(c['history-missed'], 0, 'no history page left out a message acked before it was asked for');
  t.equal(c['head-behind'], 0, 'no caught-up marker gave a head below a message acked before the sync');
  t.equal(f.unsettled, 0, 'every send was settled once traffic stopped');
  t.equal(f.failed, 0, 'no send was refused for good (the SDK retries every retryable error)');
  t.same(r.harnessProblems, [], 'every device caught up without a forced reconnect, and the final sync completed');
  t.ok(r.ok, `the history check passed; violations:\n${details}`);
}

/** A sabotage run: the checker must fail it, for the right reasons. */
export function assertCaught(t: Test, r: ScenarioResult): void {
  const f = r.check.figures;
  t.notOk(r.ok, 'the history check fails');
  t.ok(f.conflicts > 0, `seqs handed out again are reported as conflicts (${f.conflicts}; lost acked ${f.lostAcked}, duplicates ${f.duplicates}, order ${f.orderViolations})`);
}
