/**
 * Job runner contract suite: one suite, both implementations (memory; BullMQ on the run's real
 * Redis, under a key prefix unique to this file). Two runners per implementation stand for two nodes
 * (memory: one shared backend), so the rate limit and the job ids are checked across workers.
 * Queue names are unique per test. The timing checks are on the runners' promises (a delay is
 * honoured, a backoff waits), with a tolerance for timer granularity; they never time our own code.
 */
import t, { type Test } from 'tap';
import { BullmqJobRunner } from '../../src/jobs/bullmq-runner.js';
import { JobError, PermanentJobFailure } from '../../src/jobs/errors.js';
import type { QueueSpec } from '../../src/jobs/runner.js';
import { registry } from '../../src/metrics/registry.js';
import { memoryCluster, redisCluster, type RunnerCluster } from '../support/push-runners.js';
import { startsPerWindow } from '../support/push-rate.js';

/** Timer and clock slack allowed on "not before" checks. */
const SLACK_MS = 25;

let n = 0;
const spec = (over: Partial<QueueSpec> = {}): QueueSpec => ({
  name: `q${++n}-${process.pid % 10000}`,
  concurrency: 4,
  attempts: 1,
  backoffMs: 50,
  keepFinishedMs: 60_000,
  ...over,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function rejectsWithCode(t: Test, p: Promise<unknown> | (() => unknown), code: string, msg: string) {
  try {
    await (typeof p === 'function' ? p() : p);
    t.fail(`${msg}: expected ${code}, resolved instead`);
  } catch (err) {
    t.ok(err instanceof JobError, `${msg}: is a JobError`);
    t.equal((err as JobError).code, code, msg);
  }
}

function contract(factory: RunnerCluster) {
  t.test(`jobs contract: ${factory.name}`, async (t) => {
    t.teardown(() => factory.cleanup());
    const nodeA = factory.node();
    const nodeB = factory.node();

    t.test('a job runs once with its data', async (t) => {
      const s = spec();
      const seen: unknown[] = [];
      nodeA.queue<{ x: number; s: string }>(s).process(async (job) => {
        seen.push({ data: job.data, attempt: job.attempt });
      });
      const r = await nodeB.queue<{ x: number; s: string }>(s).add({ x: 1, s: 'é' });
      t.equal(r.added, true);
      t.type(r.id, 'string');
      t.equal(await nodeB.queue(s).waitFinished(r.id, 10_000), 'completed');
      t.same(seen, [{ data: { x: 1, s: 'é' }, attempt: 1 }]);
    });

    t.test('adds with an existing job id add nothing, also from another node and after the job ran', async (t) => {
      const s = spec();
      let runs = 0;
      nodeA.queue(s).process(async () => {
        runs++;
      });
      const results = await Promise.all([
        nodeA.queue(s).add({ v: 1 }, { id: 'push|alice|42' }),
        nodeB.queue(s).add({ v: 2 }, { id: 'push|alice|42' }),
        nodeB.queue(s).add({ v: 3 }, { id: 'push|alice|42' }),
      ]);
      t.same(results.map((r) => r.added).sort(), [false, false, true], 'exactly one add added the job');
      t.ok(results.every((r) => r.id === 'push|alice|42'));
      t.equal(await nodeA.queue(s).waitFinished('push|alice|42', 10_000), 'completed');
      const again = await nodeB.queue(s).add({ v: 4 }, { id: 'push|alice|42' });
      t.equal(again.added, false, 'the id of a finished job is still taken within keepFinishedMs');
      const other = await nodeB.queue(s).add({ v: 5 }, { id: 'push|alice|43' });
      t.equal(other.added, true, 'another id is a new job');
      await nodeA.queue(s).waitFinished('push|alice|43', 10_000);
      await sleep(100);
      t.equal(runs, 2, 'two jobs ran');
      const noId = await Promise.all([nodeA.queue(s).add({}), nodeA.queue(s).add({})]);
      t.ok(noId.every((r) => r.added) && noId[0]!.id !== noId[1]!.id, 'without an id every add is a new job');
    });

    t.test('a delayed job does not start before its delay', async (t) => {
      const s = spec();
      const started: number[] = [];
      nodeA.queue(s).process(async (job) => {
        started.push(job.startedAtMs);
      });
      const at = Date.now();
      const r = await nodeB.queue(s).add({}, { id: 'delayed-1', delayMs: 1000 });
      t.equal((await nodeB.queue(s).counts()).delayed, 1, 'counted as delayed');
      t.equal(await nodeB.queue(s).waitFinished(r.id, 10_000), 'completed');
      t.equal(started.length, 1);
      t.ok(started[0]! - at >= 1000 - SLACK_MS, `started ${started[0]! - at} ms after the add`);
    });

    t.test('a failing job is retried with exponential backoff and new data', async (t) => {
      const s = spec({ attempts: 3, backoffMs: 150 });
      const runs: { attempt: number; at: number; data: unknown }[] = [];
      nodeA.queue<{ left: string[] }>(s).process(async (job) => {
        runs.push({ attempt: job.attempt, at: Date.now(), data: job.data });
        if (job.attempt < 3) {
          await job.updateData({ left: job.data.left.slice(1) });
          throw new Error(`transient ${job.attempt}`);
        }
      });
      const r = await nodeB.queue<{ left: string[] }>(s).add({ left: ['a', 'b', 'c'] });
      t.equal(await nodeB.queue(s).waitFinished(r.id, 10_000), 'completed');
      t.same(
        runs.map((x) => [x.attempt, x.data]),
        [
          [1, { left: ['a', 'b', 'c'] }],
          [2, { left: ['b', 'c'] }],
          [3, { left: ['c'] }],
        ],
      );
      t.ok(runs[1]!.at - runs[0]!.at >= 150 - SLACK_MS, `first retry after ${runs[1]!.at - runs[0]!.at} ms (backoff 150)`);
      t.ok(runs[2]!.at - runs[1]!.at >= 300 - SLACK_MS, `second retry after ${runs[2]!.at - runs[1]!.at} ms (backoff doubled)`);
    });

    t.test('a job that fails every attempt ends failed; a permanent failure is not retried', async (t) => {
      const s = spec({ attempts: 3, backoffMs: 10 });
      const runs = new Map<string, number>();
      nodeA.queue<{ permanent: boolean }>(s).process(async (job) => {
        runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
        if (job.data.permanent) throw new PermanentJobFailure('test.bad', 'no point retrying');
        throw new Error('always');
      });
      const q = nodeB.queue<{ permanent: boolean }>(s);
      const a = await q.add({ permanent: false }, { id: 'fails' });
      const b = await q.add({ permanent: true }, { id: 'permanent' });
      t.equal(await q.waitFinished(a.id, 10_000), 'failed');
      t.equal(await q.waitFinished(b.id, 10_000), 'failed');
      t.equal(runs.get('fails'), 3, 'every attempt was used');
      t.equal(runs.get('permanent'), 1, 'a permanent failure ran once');
      t.equal((await q.counts()).failed, 2);
    });

    t.test('each worker runs at most `concurrency` jobs at once', async (t) => {
      const s = spec({ concurrency: 2 });
      let active = 0;
      let max = 0;
      const perNode = { a: 0, b: 0 };
      const handler = (node: 'a' | 'b') => async () => {
        active++;
        perNode[node]++;
        max = Math.max(max, active);
        await sleep(60);
        active--;
      };
      nodeA.queue(s).process(handler('a'));
      nodeB.queue(s).process(handler('b'));
      const ids = await Promise.all(Array.from({ length: 16 }, () => nodeA.queue(s).add({}).then((r) => r.id)));
      for (const id of ids) await nodeA.queue(s).waitFinished(id, 20_000);
      t.ok(max <= 4, `at most 2 x 2 at once (saw ${max})`);
      t.ok(max >= 2, `jobs did run in parallel (saw ${max})`);
      t.equal(perNode.a + perNode.b, 16);
    });

    t.test('the rate limit holds across workers of every node', async (t) => {
      const max = 4;
      const durationMs = 500;
      const jobs = 20;
      const s = spec({ concurrency: 10, limiter: { max, durationMs } });
      const starts: number[] = [];
      const handler = async (job: { startedAtMs: number }) => {
        starts.push(job.startedAtMs);
      };
      nodeA.queue(s).process(handler);
      nodeB.queue(s).process(handler);
      const ids = await Promise.all(Array.from({ length: jobs }, (_, i) => nodeA.queue(s).add({ i }).then((r) => r.id)));
      for (const id of ids) await nodeB.queue(s).waitFinished(id, 30_000);
      starts.sort((a, b) => a - b);
      t.equal(starts.length, jobs, 'every job ran once');
      const windows = startsPerWindow(starts, durationMs, SLACK_MS);
      t.ok(Math.max(...windows) <= max, `at most ${max} starts per ${durationMs} ms window (${windows.join(' ')})`);
      const span = starts.at(-1)! - starts[0]!;
      const minSpan = (Math.ceil(jobs / max) - 1) * durationMs;
      t.ok(span >= minSpan - SLACK_MS, `${jobs} jobs took ${span} ms, at least ${minSpan} ms at ${max} per ${durationMs} ms`);
    });

    t.test('waitFinished: unknown ids and timeouts are errors', async (t) => {
      const s = spec();
      const q = nodeA.queue(s);
      await rejectsWithCode(t, q.waitFinished('never-added', 2000), 'jobs.invalid', 'unknown id');
      const r = await q.add({}, { id: 'nobody-runs-it' });
      await rejectsWithCode(t, q.waitFinished(r.id, 200), 'jobs.timeout', 'no worker');
    });

    t.test('bad input is jobs.invalid', async (t) => {
      const q = nodeA.queue(spec());
      await rejectsWithCode(t, q.add({}, { id: 'a:b' }), 'jobs.invalid', 'id with a colon');
      await rejectsWithCode(t, q.add({}, { id: '123' }), 'jobs.invalid', 'all-digit id');
      await rejectsWithCode(t, q.add({}, { delayMs: -1 }), 'jobs.invalid', 'negative delay');
      await rejectsWithCode(t, () => nodeA.queue(spec({ name: 'Bad Name' })), 'jobs.invalid', 'queue name');
      await rejectsWithCode(t, () => nodeA.queue(spec({ attempts: 0 })), 'jobs.invalid', 'attempts 0');
    });

    t.test('close drains active jobs, then calls are jobs.unavailable', async (t) => {
      const s = spec();
      const extra = factory.node();
      let finished = false;
      let started = false;
      const q = extra.queue(s);
      q.process(async () => {
        started = true;
        await sleep(300);
        finished = true;
      });
      await q.add({});
      await waitFor('the job to start', () => started);
      await extra.close();
      t.equal(finished, true, 'close waited for the active job');
      await rejectsWithCode(t, q.add({}), 'jobs.unavailable', 'add after close');
      await rejectsWithCode(t, () => extra.queue(spec()), 'jobs.unavailable', 'a queue after close');
      await extra.close();
      t.pass('a second close is a no-op');
    });

    t.test('metrics: enqueues, runs and queue depth are exported', async (t) => {
      const text = await registry.metrics();
      t.match(text, new RegExp(`ticks_jobs_enqueued_total\\{queue="q\\d+-\\d+",impl="${factory.name}",result="duplicate"\\} [1-9]`));
      t.match(text, new RegExp(`ticks_jobs_runs_total\\{queue="q\\d+-\\d+",impl="${factory.name}",result="retry"\\} [1-9]`));
      const depth = factory.name === 'redis' ? 'ticks_jobs_queue_depth' : 'ticks_jobs_local_queue_depth';
      t.match(text, new RegExp(`${depth}\\{queue="q\\d+-\\d+",state="waiting"\\} \\d`));
    });
  });
}

contract(memoryCluster());
contract(redisCluster('jobs'));

t.test('BullMQ with Redis unreachable: add rejects with a retryable JobError within seconds, close still ends', async (t) => {
  const runner = new BullmqJobRunner({ url: 'redis://127.0.0.1:1', prefix: 'ticks:test:unreachable', name: 'jobs-test' });
  const q = runner.queue(spec());
  const at = Date.now();
  try {
    await q.add({}, { id: 'never' });
    t.fail('resolved without Redis');
  } catch (err) {
    t.ok(err instanceof JobError, 'a JobError');
    t.equal((err as JobError).retryable, true, 'retryable');
    t.ok(Date.now() - at < 10_000, `within ${Date.now() - at} ms`);
  }
  await runner.close();
  t.pass('closed');
});
