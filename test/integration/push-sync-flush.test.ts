/**
 * The offline-flush gate in the sync path, on a real node (2 shard threads, embedded store, memory
 * job runners): with a small inline limit and a small flush rate, several devices that reconnect at
 * once with large backlogs each go through the gate (queued, not inline), all of them catch up
 * exactly (every message, in seq order), and the storm is spread over the rate's windows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type * as Tap from 'tap';
import { errorCodeOf } from '../../src/actors/answers.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { JobError } from '../../src/jobs/errors.js';
import { startNode } from '../../src/node.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { compact, describeAll, range, text, waitUntil } from '../support/e2e-client.js';
import { E2E_BUCKET_SIZE, E2E_SECRET, E2eNode } from '../support/e2e-node.js';

const DEVICES = 6;
const BACKLOG = 20;
const PER_WINDOW = 2;
const WINDOW_MS = 1000;

/** Sum of a counter's samples whose labels include every `labels` pair. */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  let n = 0;
  for (const line of metrics.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\d+(?:\\.\\d+)?)$`).exec(line);
    if (m && Object.entries(labels).every(([k, v]) => (m[1] ?? '').includes(`${k}="${v}"`))) n += Number(m[2]);
  }
  return n;
}

async function flushNode(t: Tap.Test, jobs: Partial<Config['jobs']>): Promise<E2eNode> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-flush-'));
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: process.env.TICKS_E2E_LOG ?? 'silent' },
    store: { engine: 'embedded', bucketSize: E2E_BUCKET_SIZE, embedded: { path: join(dir, 'store') } },
    gateway: { host: '127.0.0.1', port: 0, shards: 2 },
    auth: { hs256Secret: E2E_SECRET, algorithms: ['HS256'] },
    jobs,
  });
  const node = new E2eNode({ name: 'embedded' }, config, await startNode(config, { testHooks: true }), dir);
  t.teardown(async () => {
    await node.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return node;
}

t.test('retryable job errors are answered cluster_unavailable; others internal', async (t) => {
  t.equal(errorCodeOf(new JobError('jobs.timeout', 'no permit')), 'cluster_unavailable');
  t.equal(errorCodeOf(new JobError('jobs.unavailable', 'redis down')), 'cluster_unavailable');
  t.equal(errorCodeOf(new JobError('jobs.invalid', 'bad id')), 'internal');
});

t.test('a catch-up whose permit does not come in time is answered cluster_unavailable, retried, and completes', async (t) => {
  // One permit per shard per 4 s and a 1 s wait: of 3 devices at least 2 share a shard, so one is
  // refused at least once, retries with backoff and gets its permit in a later window.
  const node = await flushNode(t, { flushInlineMaxMessages: 1, flushMaxPerWindow: 1, flushWindowMs: 4000, flushMaxWaitMs: 1000 });
  const sender = node.client('sam', 'phone');
  await sender.connect();
  const users = range(1, 3).map((i) => `w${i}`);
  for (const u of users) for (const i of range(1, 3)) await sender.send({ to: u }, `${u}-${i}`);
  const receivers = users.map((u) => node.client(u, 'phone'));
  await Promise.all(receivers.map((c) => c.connect()));
  const refused = receivers.filter((c) => c.net.trace.some((f) => f.endsWith(':cluster_unavailable')));
  t.ok(refused.length >= 1, `${refused.map((c) => c.label).join(', ')} got cluster_unavailable for a sync and retried`);
  for (const [i, c] of receivers.entries()) {
    const got = c.messages(directConversationId('sam', users[i]!));
    t.same(got.map((m) => text(m.body)), range(1, 3).map((n) => `${users[i]}-${n}`), `${c.label} caught up exactly`);
  }
  const m = await (await fetch(`http://127.0.0.1:${node.node.port}/metrics`)).text();
  t.ok(sample(m, 'ticks_jobs_flush_requests_total', { mode: 'queued', result: 'timeout' }) >= 1, 'the timeout is counted');
  t.equal(sample(m, 'ticks_jobs_flush_requests_total', { mode: 'queued', result: 'ok' }), 3, 'each device got one permit in the end');
});

t.test('a reconnect storm of large backlogs is paced by the flush gate and every device catches up exactly', async (t) => {
  const node = await flushNode(t, { flushInlineMaxMessages: 5, flushMaxPerWindow: PER_WINDOW, flushWindowMs: WINDOW_MS, flushMaxWaitMs: 30_000 });
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${node.node.port}/metrics`)).text();

  const sender = node.client('sam', 'phone');
  await sender.connect();
  const users = range(1, DEVICES).map((i) => `u${i}`);
  for (const u of users) {
    for (const i of range(1, BACKLOG)) await sender.send({ to: u }, `${u}-${i}`);
  }
  const before = await metrics();
  const queuedBefore = sample(before, 'ticks_jobs_flush_requests_total', { mode: 'queued', result: 'ok' });

  const receivers = users.map((u) => node.client(u, 'phone'));
  const started = Date.now();
  await Promise.all(receivers.map((c) => c.connect()));
  const elapsedMs = Date.now() - started;

  for (const [i, c] of receivers.entries()) {
    const conv = directConversationId('sam', users[i]!);
    await waitUntil(() => c.messages(conv).length >= BACKLOG, `${c.label} to hold its backlog`, describeAll(receivers));
    const got = c.messages(conv);
    t.same(got.map((m) => m.seq), range(1, BACKLOG), `${c.label} got seqs 1..${BACKLOG} in order once (${compact(got.map((m) => m.seq))})`);
    t.same(got.map((m) => text(m.body)), range(1, BACKLOG).map((n) => `${users[i]}-${n}`), `${c.label} got every body`);
  }
  const after = await metrics();
  t.equal(
    sample(after, 'ticks_jobs_flush_requests_total', { mode: 'queued', result: 'ok' }) - queuedBefore,
    DEVICES,
    `each of the ${DEVICES} catch-ups (backlog ${BACKLOG} > inline limit 5) waited for a flush permit`,
  );
  t.equal(sample(after, 'ticks_jobs_flush_requests_total', { mode: 'queued', result: 'timeout' }), 0, 'no permit timed out');
  // At most PER_WINDOW permits per window over the node: DEVICES permits need that many windows.
  const minMs = (Math.ceil(DEVICES / PER_WINDOW) - 1) * WINDOW_MS;
  t.ok(elapsedMs >= minMs * 0.9, `the storm took ${elapsedMs} ms: it spans the ${Math.ceil(DEVICES / PER_WINDOW)} windows the flush rate needs (at least ${minMs} ms)`);
});

t.test('a member added to a group with a long history catches up inline: its backlog starts at its join floor', async (t) => {
  const node = await flushNode(t, { flushInlineMaxMessages: 5, flushMaxPerWindow: 1, flushWindowMs: 1000, flushMaxWaitMs: 30_000 });
  const count = async (mode: string): Promise<number> =>
    sample(await (await fetch(`http://127.0.0.1:${node.node.port}/metrics`)).text(), 'ticks_jobs_flush_requests_total', { mode, result: 'ok' });
  const ann = node.client('ann', 'phone');
  await ann.connect();
  const { conv } = await ann.sdk.createGroup({ name: 'Long', members: ['bea'], cmid: 'long' });
  for (const i of range(1, BACKLOG)) await ann.send({ conv }, `m${i}`);
  const added = await ann.sdk.addMembers(conv, ['cal']);
  await ann.send({ conv }, 'hello cal');

  let [queued, inline] = [await count('queued'), await count('inline')];
  const bea = node.client('bea', 'phone');
  await bea.connect();
  await waitUntil(() => bea.messages(conv).length >= added.seq + 1, 'bea to hold the whole group', describeAll([bea]));
  t.equal(await count('queued'), queued + 1, `a founding member missing all ${added.seq + 1} seqs waits for a permit (the gate applies)`);

  [queued, inline] = [await count('queued'), await count('inline')];
  const cal = node.client('cal', 'phone');
  await cal.connect();
  await waitUntil(() => cal.messages(conv).length >= 2, 'cal to hold its add and the message after it', describeAll([cal]));
  t.same(cal.messages(conv).map((m) => m.seq), [added.seq, added.seq + 1], 'cal gets the group from its add event');
  t.equal(await count('queued'), queued, `cal (2 seqs from its floor at ${added.seq}) did not wait for a permit`);
  t.equal(await count('inline'), inline + 1, 'its catch-up ran inline');
});
