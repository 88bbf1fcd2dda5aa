/**
 * Offline flush pacing, on both job runners, with two gates standing for two nodes: a storm of
 * concurrent large catch-ups is admitted at no more than the configured rate over both nodes
 * (counted per window from the moments the permits arrive), small backlogs pass at once, repeated
 * requests of one session share a permit, and a permit that never comes is a retryable error.
 */
import t, { type Test } from 'tap';
import { JobError } from '../../src/jobs/errors.js';
import { backlogOf, FLUSH_QUEUE, OfflineFlush } from '../../src/jobs/flush.js';
import { MemoryJobRunner } from '../../src/jobs/memory-runner.js';
import { startsPerWindow } from '../support/push-rate.js';
import { memoryCluster, redisCluster, type RunnerCluster } from '../support/push-runners.js';

const MAX = 5;
const WINDOW_MS = 600;
const INLINE_MAX = 10;

t.test('backlogOf counts head minus cursor per conversation', async (t) => {
  const convs = [
    { conversationId: 'a', kind: 'group' as const, role: 'member' as const, joinedAtMs: 0, head: 10 },
    { conversationId: 'b', kind: 'group' as const, role: 'member' as const, joinedAtMs: 0, head: 5 },
    { conversationId: 'c', kind: 'group' as const, role: 'member' as const, joinedAtMs: 0, head: 0 },
  ];
  t.equal(backlogOf(convs, [{ conversationId: 'a', seq: 4 }, { conversationId: 'b', seq: 9 }]), 6);
  t.equal(backlogOf(convs, new Map([['a', 10]])), 5);
  t.equal(backlogOf(convs, []), 15);
});

t.test('backlogOf starts at a group member\'s join floor, like sync', async (t) => {
  const uc = (conversationId: string, kind: 'group' | 'direct' | 'channel', head: number, fromSeq?: number) => ({
    conversationId, kind, role: 'member' as const, joinedAtMs: 0, head, ...(fromSeq === undefined ? {} : { fromSeq }),
  });
  // Joined a group at seq 1000 (its add event, which sync sends) whose head is 1010.
  t.equal(backlogOf([uc('g', 'group', 1010, 1000)], []), 11, 'no cursor: the floor event and the 10 after it, not 1010');
  t.equal(backlogOf([uc('g', 'group', 1010, 1000)], new Map([['g', 3]])), 11, 'a cursor below the floor (an earlier membership) counts from the floor');
  t.equal(backlogOf([uc('g', 'group', 1010, 1000)], new Map([['g', 1005]])), 5, 'a cursor above the floor counts from the cursor');
  t.equal(backlogOf([uc('g', 'group', 1010, 1000)], new Map([['g', 1010]])), 0, 'caught up');
  t.equal(backlogOf([uc('g', 'group', 1010, 1)], []), 1010, 'floor 1 (a founding member): the whole log');
  t.equal(backlogOf([uc('g', 'group', 1010, 0)], []), 1010, 'floor 0 (rows from before floors): the whole log');
  t.equal(backlogOf([uc('c', 'channel', 1010, 1000), uc('d', 'direct', 7, 5)], []), 1017, 'channels and direct conversations have no floor');
});

function suite(cluster: RunnerCluster) {
  t.test(`offline flush: ${cluster.name}`, async (t: Test) => {
    t.teardown(() => cluster.cleanup());
    const grants: number[] = [];
    const gate = () =>
      new OfflineFlush({
        runner: cluster.node(),
        inlineMaxMessages: INLINE_MAX,
        maxPerWindow: MAX,
        windowMs: WINDOW_MS,
        maxWaitMs: 20_000,
        work: true,
        onGrant: (at) => grants.push(at),
      });
    const nodes = [gate(), gate()];
    const run = `${cluster.name}${process.pid}`;

    const storm = 30;
    const admitted: number[] = [];
    const modes: string[] = [];
    const pending = Array.from({ length: storm }, (_, i) =>
      nodes[i % 2]!.schedule({ user: `u${i}-${run}`, device: 'd1', session: 's1', backlog: 100 + i }).then((p) => {
        admitted.push(Date.now());
        modes.push(p.mode);
      }),
    );
    // While the storm is queued, a small backlog passes at once.
    await new Promise((r) => setTimeout(r, 50));
    const small = await nodes[1]!.schedule({ user: `small-${run}`, device: 'd1', session: 's1', backlog: INLINE_MAX });
    t.same(small, { mode: 'inline', waitedMs: 0 }, 'a backlog within flushInlineMaxMessages runs inline');
    t.ok(admitted.length < storm, `the inline one did not wait for the storm (${admitted.length} of ${storm} admitted so far)`);
    await Promise.all(pending);

    t.equal(admitted.length, storm, 'every catch-up was admitted');
    t.ok(modes.every((m) => m === 'queued'));
    // When permits were granted, on the limiter's own clock (callers notice later, by however long
    // a busy machine keeps their process waiting): BullMQ's record in Redis (the server's time of
    // each move to active); the memory runner's grant time.
    t.equal(grants.length, storm, 'one grant per queued catch-up');
    const granted = cluster.activeTimes ? await cluster.activeTimes(FLUSH_QUEUE) : grants;
    t.equal(granted.length, storm);
    // A window opens at a grant and holds what starts before it ends; 25 ms of slack absorbs the
    // difference between the limiter's expiry (Redis PX) and the recorded start times (the worker's
    // clock when it moved the job), which put a 6th grant 1-2 ms inside a window on a loaded box.
    const windows = startsPerWindow(granted, WINDOW_MS, 25);
    t.ok(Math.max(...windows) <= MAX, `at most ${MAX} catch-ups granted per ${WINDOW_MS} ms window over both nodes (${windows.join(' ')})`);
    const span = Math.max(...granted) - Math.min(...granted);
    const minSpan = (Math.ceil(storm / MAX) - 1) * WINDOW_MS;
    t.ok(span >= minSpan - 5, `${storm} grants took ${span} ms, at least ${minSpan} ms at ${MAX} per ${WINDOW_MS} ms`);
    const twice = await Promise.all([
      nodes[0]!.schedule({ user: `again-${run}`, device: 'd1', session: 's9', backlog: 50 }),
      nodes[1]!.schedule({ user: `again-${run}`, device: 'd1', session: 's9', backlog: 50 }),
    ]);
    t.ok(twice.every((p) => p.mode === 'queued'), 'a repeated request of one session is admitted too');
  });
}

suite(memoryCluster());
suite(redisCluster('flush'));

t.test('a permit that never comes is jobs.timeout (retryable)', async (t) => {
  const runner = new MemoryJobRunner();
  t.teardown(() => runner.close());
  const gate = new OfflineFlush({ runner, inlineMaxMessages: 0, maxPerWindow: 1, windowMs: 1000, maxWaitMs: 1000, work: false });
  try {
    await gate.schedule({ user: 'u', device: 'd', session: 's', backlog: 1 });
    t.fail('resolved without a permit');
  } catch (err) {
    t.ok(err instanceof JobError);
    t.equal((err as JobError).code, 'jobs.timeout');
    t.equal((err as JobError).retryable, true);
  }
});
