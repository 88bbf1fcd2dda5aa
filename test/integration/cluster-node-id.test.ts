/**
 * One node id, one live process (routing.ts, "Identity"), on the real Redis directory:
 *
 * - a second process with the node id of a live one refuses to start (its shard threads find their
 *   endpoint claimed and renewed for a whole lease), and says why; the live one is untouched;
 * - a shard thread restarted inside the same process (same incarnation) claims its endpoint at once;
 * - a process whose predecessor stopped cleanly starts at once; one whose predecessor was killed
 *   (its claim left to expire) starts once the claim expired;
 * - conversation leases are per incarnation: another incarnation of the same endpoint can neither
 *   renew them nor win them back, and answers `cluster_unavailable` until they expire.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { silentLog } from '../../src/actors/log.js';
import type { SessionRef } from '../../src/actors/session.js';
import { createShardActors } from '../../src/actors/shard-actors.js';
import { MemoryShardNetwork } from '../../src/actors/shard-link.js';
import { MemoryBus, MemoryBusHub } from '../../src/cluster/bus/memory-bus.js';
import { closeRedis } from '../../src/cluster/bus/redis-bus.js';
import { RedisDirectory } from '../../src/cluster/directory/redis-directory.js';
import { createRedis } from '../../src/cluster/redis-client.js';
import { ClusterRouting } from '../../src/cluster/routing.js';
import { MemorySessions } from '../../src/cluster/sessions/memory-sessions.js';
import { registry } from '../../src/metrics/registry.js';
import type { ServerFrame } from '../../src/protocol/client-frames.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { clusterSpec, startClusterNode } from '../support/cluster-nodes.js';
import { waitUntil } from '../support/e2e-client.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';
import { TEST_ACTORS_CONFIG } from './actors-harness.js';

const LEASE_MS = 900;
const HEARTBEAT_MS = 100;

async function claims(result: string): Promise<number> {
  const text = await registry.getSingleMetricAsString('ticks_cluster_node_claims_total');
  return Number(new RegExp(`result="${result}"} (\\d+)`).exec(text)?.[1] ?? 0);
}

async function setUp(t: Test, suffix: string) {
  const url = requireRedisUrl();
  const keyPrefix = uniqueRedisPrefix(suffix);
  const redis = createRedis({ url, keyPrefix, name: 'node-id-test' });
  const directory = new RedisDirectory({ redis, leaseMs: LEASE_MS });
  await directory.loadScripts();
  const dir = mkdtempSync(join(tmpdir(), 'ticks-node-id-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  const hub = new MemoryBusHub();
  const sessions = new MemorySessions();
  const running: { routing: ClusterRouting; drain: () => Promise<void> }[] = [];
  t.teardown(async () => {
    for (const r of running) {
      await r.drain();
      await r.routing.close();
    }
    const plain = new Redis(url);
    const keys = await plain.keys(`${keyPrefix}*`);
    if (keys.length > 0) await plain.del(...keys);
    plain.disconnect();
    await closeRedis(redis);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** One shard thread of node `nodeId` in process incarnation `incarnation`, wired as src/shard.ts does. */
  const start = async (nodeId: string, incarnation: string) => {
    const frames: ServerFrame[] = [];
    const routing = new ClusterRouting({ nodeId, shard: 0, directory, bus: new MemoryBus(hub), sessions, heartbeatMs: HEARTBEAT_MS, sessionTtlMs: 60_000, log: silentLog, incarnation });
    const actors = createShardActors({
      shard: 0,
      shardCount: 1,
      nodeId,
      store,
      config: TEST_ACTORS_CONFIG,
      sink: { push: (_c, f) => (frames.push(f), 'sent'), close() {} },
      link: new MemoryShardNetwork(1).link(0),
      cluster: routing,
      epochs: routing,
    });
    await routing.start(actors.router);
    running.push({ routing, drain: () => actors.drain() });
    return { routing, actors, frames };
  };
  return { directory, start };
}

t.test('a second live process with the same node id refuses to start; restarts of the same id start', async (t) => {
  const { directory, start } = await setUp(t, 'nodeid1');
  const a = await start('dup', 'incarnation-a');
  t.equal(a.routing.activation.activationId, 'dup.0/incarnation-a', 'the activation is per incarnation');
  t.equal((await directory.lookup('node/dup.0'))?.activationId, 'dup.0/incarnation-a', 'the endpoint is claimed by incarnation a');

  const refusedBefore = await claims('refused');
  const t0 = Date.now();
  await t.rejects(start('dup', 'incarnation-b'), { code: 'cluster.invalid', message: /node id dup is in use.*incarnation-a/ }, 'incarnation b (a live node id) refuses to start');
  const waited = Date.now() - t0;
  t.ok(waited >= LEASE_MS, `it waited a lease for a predecessor's claim to expire first (${waited} ms)`);
  t.equal(await claims('refused'), refusedBefore + 1, 'counted as refused');
  t.equal((await directory.lookup('node/dup.0'))?.activationId, 'dup.0/incarnation-a', 'incarnation a still holds the claim (its heartbeat renewed it throughout)');

  // A shard thread the supervisor restarts keeps its process's incarnation: it claims at once.
  const wonBefore = await claims('won');
  const t1 = Date.now();
  const again = await start('dup', 'incarnation-a');
  t.ok(Date.now() - t1 < LEASE_MS, `a restarted shard thread of the same process claims at once (${Date.now() - t1} ms)`);
  t.equal(await claims('won'), wonBefore + 1, 'counted as won');
  await again.routing.close();
  await a.routing.close();
  t.equal(await directory.lookup('node/dup.0'), null, 'a clean stop gives the claim back');
  const t2 = Date.now();
  await start('dup', 'incarnation-c');
  t.ok(Date.now() - t2 < LEASE_MS, `after a clean stop the next process starts at once (${Date.now() - t2} ms)`);
});

t.test('after a kill -9 the next process under the node id starts once the dead claim expired', async (t) => {
  const { directory, start } = await setUp(t, 'nodeid2');
  // The claim of a process that died without stopping: registered, never renewed again.
  const dead = { node: 'k.0', activationId: 'k.0/dead' };
  t.ok((await directory.register('node/k.0', dead)).won, 'a dead incarnation left its claim');
  const afterWaitBefore = await claims('won_after_wait');
  const t0 = Date.now();
  await start('k', 'alive');
  const waited = Date.now() - t0;
  t.ok(waited >= LEASE_MS - 200 && waited < 2 * LEASE_MS + HEARTBEAT_MS * 3, `it started once the dead claim expired (${waited} ms)`);
  t.equal(await claims('won_after_wait'), afterWaitBefore + 1, 'counted as won after a wait');
  t.equal((await directory.lookup('node/k.0'))?.activationId, 'k.0/alive', 'the claim is the new incarnation’s');
});

t.test('conversation leases are per incarnation: another incarnation of the endpoint cannot take them over early', async (t) => {
  const { directory, start } = await setUp(t, 'nodeid3');
  const conv = 'd:alice:bob';
  // A predecessor process of endpoint m.0 owned the conversation and died (claim and lease left).
  const dead = { node: 'm.0', activationId: 'm.0/dead' };
  const old = await directory.register(`conv/${conv}`, dead);
  t.ok(old.won, 'the dead incarnation held the conversation');
  const n = await start('m', 'alive');
  t.equal(await directory.renew(`conv/${conv}`, n.routing.activation), false, 'the new incarnation cannot renew the old lease');
  const alice: SessionRef = { node: 'm', shard: 0, connId: 1, user: 'alice', device: 'phone' };
  n.actors.handler.opened(alice);
  const answer = async (id: number) => {
    n.actors.handler.frame(alice, { t: 'send', id, to: 'bob', cmid: `c${id}`, body: new Uint8Array([id]) });
    await waitUntil(() => n.frames.some((f) => (f.t === 'sent' || f.t === 'error') && f.id === id), `answer to send ${id}`, () => JSON.stringify(n.frames));
    return n.frames.find((f) => (f.t === 'sent' || f.t === 'error') && f.id === id)!;
  };
  const first = await answer(1);
  if ((await directory.lookup(`conv/${conv}`))?.activationId === 'm.0/dead') {
    t.match(first, { t: 'error', code: 'cluster_unavailable', retry: true }, 'while the dead lease lives, a send is answered cluster_unavailable (never forwarded to itself)');
  } else t.pass('the dead lease had already expired during start-up');
  await waitUntil(async () => (await directory.lookup(`conv/${conv}`))?.activationId !== 'm.0/dead', 'the dead lease to expire');
  t.match(await answer(2), { t: 'sent', seq: 1 }, 'once it expired, the new incarnation registers and acks');
  const owner = await directory.lookup(`conv/${conv}`);
  t.equal(owner?.activationId, 'm.0/alive', 'owned by the new incarnation');
  t.ok(owner!.epoch > old.owner.epoch, 'with a higher epoch');
});

t.test('two node processes with one TICKS_NODE_ID: the second exits at start and says why', async (t) => {
  const spec = clusterSpec('nodeid_proc');
  const first = await startClusterNode(t, spec, 'same');
  const c = first.client('alice.nid', 'phone');
  await c.connect();
  const err = await startClusterNode(t, spec, 'same').then(
    () => null,
    (e: unknown) => e as Error,
  );
  t.ok(err !== null, 'the second process did not start');
  t.match(err?.message ?? '', /exited during start[\s\S]*node id same is in use/, 'it exited at start, naming the node id in use');
  await c.send({ to: 'bob.nid' }, 'still here');
  t.equal(c.outgoing.filter((o) => o.result !== undefined).length, 1, 'the first process still serves: a send is acked');
});
