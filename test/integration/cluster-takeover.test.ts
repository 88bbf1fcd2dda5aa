/**
 * Lease loss and takeover in one process, on the memory cluster parts (one shared directory, bus
 * hub and session registry, as nodes share Redis) and one embedded store: two "nodes" of one shard
 * each, wired as src/shard.ts wires them. Deterministic where the process tests are not:
 *
 * - the directory hands the conversation to another node (the first owner's entry is gone): the
 *   first owner's renew answers false, it stops acking and deactivates; its next message is
 *   forwarded to the new owner; the new owner's fencing epoch is above the first one's;
 * - nothing acked is lost and seqs stay dense across the handover.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ConnectionSink, SessionRef } from '../../src/actors/session.js';
import { createShardActors, type ShardActors } from '../../src/actors/shard-actors.js';
import { MemoryShardNetwork } from '../../src/actors/shard-link.js';
import { silentLog } from '../../src/actors/log.js';
import { MemoryBus, MemoryBusHub } from '../../src/cluster/bus/memory-bus.js';
import type { Directory } from '../../src/cluster/directory/directory.js';
import { MemoryDirectory } from '../../src/cluster/directory/memory-directory.js';
import { ClusterError } from '../../src/cluster/errors.js';
import { ClusterRouting } from '../../src/cluster/routing.js';
import { MemorySessions } from '../../src/cluster/sessions/memory-sessions.js';
import { registry } from '../../src/metrics/registry.js';
import type { ServerFrame } from '../../src/protocol/client-frames.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { waitUntil } from '../support/e2e-client.js';
import { TEST_ACTORS_CONFIG } from './actors-harness.js';

interface FakeNode {
  id: string;
  routing: ClusterRouting;
  actors: ShardActors;
  frames: Map<number, ServerFrame[]>;
}

t.test('a node whose lease is taken over stops acking; the new owner gets a higher epoch and the next messages', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-takeover-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  const directory = new MemoryDirectory({ leaseMs: 3000 });
  const hub = new MemoryBusHub();
  const sessions = new MemorySessions();
  const nodes: FakeNode[] = [];
  t.teardown(async () => {
    for (const n of nodes) {
      await n.actors.drain();
      await n.routing.close();
    }
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (id: string): Promise<FakeNode> => {
    const frames = new Map<number, ServerFrame[]>();
    const sink: ConnectionSink<ServerFrame> = {
      push(conn, frame) {
        const list = frames.get(conn.connId) ?? [];
        list.push(frame);
        frames.set(conn.connId, list);
        return 'sent';
      },
      close() {},
    };
    const routing = new ClusterRouting({ nodeId: id, shard: 0, directory, bus: new MemoryBus(hub), sessions, heartbeatMs: 50, sessionTtlMs: 60_000, log: silentLog });
    const actors = createShardActors({
      shard: 0,
      shardCount: 1,
      nodeId: id,
      store,
      config: TEST_ACTORS_CONFIG,
      sink,
      link: new MemoryShardNetwork(1).link(0),
      cluster: routing,
      epochs: routing,
    });
    await routing.start(actors.router);
    const n = { id, routing, actors, frames };
    nodes.push(n);
    return n;
  };

  const n1 = await start('n1');
  const n2 = await start('n2');
  const alice: SessionRef = { node: 'n1', shard: 0, connId: 1, user: 'alice', device: 'phone' };
  const bob: SessionRef = { node: 'n2', shard: 0, connId: 1, user: 'bob', device: 'phone' };
  n1.actors.handler.opened(alice);
  n2.actors.handler.opened(bob);
  const conv = directConversationId('alice', 'bob');
  const answers = (n: FakeNode) => n.frames.get(1) ?? [];
  const answer = (n: FakeNode, id: number) => answers(n).find((f) => (f.t === 'sent' || f.t === 'error') && f.id === id);
  const send = async (n: FakeNode, s: SessionRef, id: number) => {
    n.actors.handler.frame(s, { t: 'send', id, to: s.user === 'alice' ? 'bob' : 'alice', cmid: `c${id}`, body: new Uint8Array([id]) });
    await waitUntil(() => answer(n, id) !== undefined, `answer to send ${id}`, () => JSON.stringify(answers(n)));
    return answer(n, id)!;
  };

  t.match(await send(n1, alice, 1), { t: 'sent', seq: 1 }, 'alice (n1) sends first: n1 registers and commits');
  const first = await directory.lookup(`conv/${conv}`);
  t.equal(first?.node, 'n1.0', 'n1 owns the conversation');
  t.match(await send(n2, bob, 2), { t: 'sent', seq: 2 }, "bob's send (n2) is forwarded to n1 and acked over the bus");
  t.ok(answers(n2).some((f) => f.t === 'msg' && f.seq === 1), "bob (n2) got alice's message live");

  // The directory loses n1's entry (as after a Redis failover). n1's next heartbeat learns it
  // (renew = false): it stops acking and deactivates at once.
  t.ok(await directory.unregister(`conv/${conv}`, first!), 'the entry of n1 is removed behind its back');
  const lost = async () => (await registry.getSingleMetricAsString('ticks_cluster_leases_lost_total')).match(/reason="taken_over"} (\d+)/)?.[1];
  await waitUntil(async () => (await lost()) !== undefined, 'n1 to count a lease taken over');
  t.equal(n1.routing.stats().owned, 0, 'n1 no longer owns anything');
  // Once n2's cached route to n1 is older than a heartbeat, bob's send makes n2 register.
  await new Promise((r) => setTimeout(r, 150));
  t.match(await send(n2, bob, 3), { t: 'sent', seq: 3 }, 'n2 registers and commits seq 3 with its own epoch');
  const second = await directory.lookup(`conv/${conv}`);
  t.equal(second?.node, 'n2.0', 'n2 owns the conversation now');
  t.ok(second !== null && second.epoch > first!.epoch, `the new epoch ${second?.epoch} is above the old ${first!.epoch}`);
  t.match(await send(n1, alice, 4), { t: 'sent', seq: 4 }, "alice's next send (n1) goes to the new owner and is acked");
  await waitUntil(
    () => answers(n1).filter((f) => f.t === 'msg').length === 2,
    'alice to get bob’s messages 2 and 3 live',
    () => `alice got ${JSON.stringify(answers(n1).map((f) => ({ t: f.t, seq: 'seq' in f ? f.seq : undefined })))}; n1 ${JSON.stringify(n1.routing.stats())}, n2 ${JSON.stringify(n2.routing.stats())}`,
  );
  const page = await store.readForward(conv, 0, 10);
  t.same(page.messages.map((m) => m.seq), [1, 2, 3, 4], 'the store holds seqs 1..4, dense, every ack in it');
  t.same(page.messages.map((m) => m.clientMsgId), ['c1', 'c2', 'c3', 'c4'], 'each acked send exactly once');
});

t.test('a node that cannot renew stops acking when its lease runs out on its own clock, and answers cluster_unavailable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-takeover-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  const real = new MemoryDirectory({ leaseMs: 1500 });
  let down = false;
  const unreachable = () => Promise.reject(new ClusterError('cluster.unavailable', 'directory down (test)'));
  // Fault injection on the memory directory: while `down`, every operation fails as Redis would.
  const directory: Directory = {
    impl: 'memory',
    leaseMs: real.leaseMs,
    register: (a, act) => (down ? unreachable() : real.register(a, act)),
    renew: (a, act) => (down ? unreachable() : real.renew(a, act)),
    renewMany: (l) => (down ? unreachable() : real.renewMany(l)),
    unregister: (a, act) => (down ? unreachable() : real.unregister(a, act)),
    lookup: (a) => (down ? unreachable() : real.lookup(a)),
  };
  const frames: ServerFrame[] = [];
  const sink: ConnectionSink<ServerFrame> = {
    push: (_conn, frame) => (frames.push(frame), 'sent'),
    close() {},
  };
  const routing = new ClusterRouting({ nodeId: 'n1', shard: 0, directory, bus: new MemoryBus(new MemoryBusHub()), sessions: new MemorySessions(), heartbeatMs: 50, sessionTtlMs: 60_000, log: silentLog });
  const actors = createShardActors({ shard: 0, shardCount: 1, nodeId: 'n1', store, config: TEST_ACTORS_CONFIG, sink, link: new MemoryShardNetwork(1).link(0), cluster: routing, epochs: routing });
  await routing.start(actors.router);
  t.teardown(async () => {
    await actors.drain();
    await routing.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const alice: SessionRef = { node: 'n1', shard: 0, connId: 1, user: 'alice', device: 'phone' };
  actors.handler.opened(alice);
  const answer = async (id: number, cmid = `c${id}`) => {
    actors.handler.frame(alice, { t: 'send', id, to: 'bob', cmid, body: new Uint8Array([id]) });
    await waitUntil(() => frames.some((f) => (f.t === 'sent' || f.t === 'error') && f.id === id), `answer to send ${id}`, () => JSON.stringify(frames));
    return frames.find((f) => (f.t === 'sent' || f.t === 'error') && f.id === id)!;
  };
  t.match(await answer(1), { t: 'sent', seq: 1 }, 'acked while the directory is up');
  down = true;
  const expiredBefore = (await registry.getSingleMetricAsString('ticks_cluster_leases_lost_total')).match(/reason="expired"} (\d+)/)?.[1] ?? '0';
  await waitUntil(() => routing.stats().owned === 0, 'the lease to run out on the local clock');
  const expiredAfter = (await registry.getSingleMetricAsString('ticks_cluster_leases_lost_total')).match(/reason="expired"} (\d+)/)?.[1];
  t.equal(Number(expiredAfter), Number(expiredBefore) + 1, 'counted as an expired lease');
  t.match(await answer(2), { t: 'error', code: 'cluster_unavailable', retry: true }, 'no ack without a lease: cluster_unavailable, retryable');
  down = false;
  await new Promise((r) => setTimeout(r, real.leaseMs));
  t.match(await answer(3, 'c2'), { t: 'sent', seq: 2, dup: false }, 'the retry (same cmid) is acked once the directory is back');
});
