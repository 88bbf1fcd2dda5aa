/**
 * A node that loses a conversation's lease forwards what it holds to the new owner (conv-routing.ts,
 * "Leases"). Two "nodes" of one shard each in this process, on the real Redis directory, bus and
 * session registry (as src/shard.ts wires them) and one embedded store; node 1's appends can be
 * held at a gate, so sends queue behind a slow group commit:
 *
 * - the lease is stolen while sends (from both nodes' users) wait behind the held commit: every one
 *   of them, the in-flight commit's included, is answered `sent` by the new owner, each exactly once,
 *   and the held commit, released afterwards, is fenced by the new owner's epoch: seqs stay dense,
 *   every cmid is in the store once, at the seq its answer gave;
 * - the held commit lands before the new owner opens its writer: the new owner answers those sends
 *   `dup` with the seqs the old commit wrote, and the old owner never acks them.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import type { ConnectionSink, SessionRef } from '../../src/actors/session.js';
import { createShardActors, type ShardActors } from '../../src/actors/shard-actors.js';
import { MemoryShardNetwork } from '../../src/actors/shard-link.js';
import { silentLog } from '../../src/actors/log.js';
import { closeRedis, RedisBus } from '../../src/cluster/bus/redis-bus.js';
import { RedisDirectory } from '../../src/cluster/directory/redis-directory.js';
import { createRedis } from '../../src/cluster/redis-client.js';
import { ClusterRouting } from '../../src/cluster/routing.js';
import { RedisSessions } from '../../src/cluster/sessions/redis-sessions.js';
import { registry } from '../../src/metrics/registry.js';
import type { ServerFrame } from '../../src/protocol/client-frames.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import type { ConversationWriter, Store } from '../../src/store/store.js';
import { waitUntil } from '../support/e2e-client.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';
import { TEST_ACTORS_CONFIG } from './actors-harness.js';

const LEASE_MS = 3000;
const REGISTER_LUA = readFileSync(new URL('../../src/cluster/directory/lua/register.lua', import.meta.url), 'utf8');

/** Holds a store call until opened; counts the calls that reached it. */
class Gate {
  private open: Promise<void> | null = null;
  private release: () => void = () => {};
  entered = 0;
  passed = 0;

  close(): void {
    this.open = new Promise((r) => (this.release = r));
  }

  opened(): void {
    this.open = null;
    this.release();
  }

  async pass(): Promise<void> {
    if (this.open !== null) {
      this.entered++;
      await this.open;
    }
  }
}

/** The store of one node: the shared engine, with that node's appends and writer opens gated. */
function gatedStore(store: Store, gates: { append: Gate; open: Gate; appended: (results: number) => void }): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'openWriter') {
        return async (conv: string, epoch: number): Promise<ConversationWriter> => {
          await gates.open.pass();
          const w = await target.openWriter(conv, epoch);
          return {
            conversationId: w.conversationId,
            epoch: w.epoch,
            get head() {
              return w.head;
            },
            append: async (drafts) => {
              await gates.append.pass();
              const r = await w.append(drafts);
              gates.appended(r.length);
              return r;
            },
          };
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

interface Node {
  id: string;
  routing: ClusterRouting;
  actors: ShardActors;
  frames: ServerFrame[];
  gates: { append: Gate; open: Gate };
  appendErrors: unknown[];
  landed: number;
}

async function setUp(t: Test, suffix: string) {
  const url = requireRedisUrl();
  const keyPrefix = uniqueRedisPrefix(suffix);
  const dir = mkdtempSync(join(tmpdir(), 'ticks-handoff-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  const admin = new Redis(url, { keyPrefix, lazyConnect: true });
  await admin.connect();
  const nodes: Node[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    for (const n of nodes) {
      n.gates.append.opened();
      n.gates.open.opened();
      await n.actors.drain();
      await n.routing.close();
    }
    for (const c of closers) await c();
    const plain = new Redis(url);
    const keys = await plain.keys(`${keyPrefix}*`);
    if (keys.length > 0) await plain.del(...keys);
    plain.disconnect();
    admin.disconnect();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (id: string): Promise<Node> => {
    const frames: ServerFrame[] = [];
    const sink: ConnectionSink<ServerFrame> = {
      push: (_conn, frame) => (frames.push(frame), 'sent'),
      close() {},
    };
    const dirRedis = createRedis({ url, keyPrefix, name: `${id}-directory` });
    const sessRedis = createRedis({ url, keyPrefix, name: `${id}-sessions` });
    const bus = new RedisBus({ url, keyPrefix });
    closers.push(() => bus.close(), () => closeRedis(dirRedis), () => closeRedis(sessRedis));
    const directory = new RedisDirectory({ redis: dirRedis, leaseMs: LEASE_MS });
    const sessions = new RedisSessions({ redis: sessRedis });
    await directory.loadScripts();
    await sessions.loadScripts();
    const routing = new ClusterRouting({ nodeId: id, shard: 0, directory, bus, sessions, heartbeatMs: 100, sessionTtlMs: 60_000, log: silentLog });
    const n = { id, routing, frames, gates: { append: new Gate(), open: new Gate() }, appendErrors: [], landed: 0 } as unknown as Node;
    n.actors = createShardActors({
      shard: 0,
      shardCount: 1,
      nodeId: id,
      store: gatedStore(store, { ...n.gates, appended: (k) => (n.landed += k) }),
      config: TEST_ACTORS_CONFIG,
      sink,
      link: new MemoryShardNetwork(1).link(0),
      cluster: routing,
      epochs: routing,
    });
    await routing.start(n.actors.router);
    nodes.push(n);
    return n;
  };

  const n1 = await start(`h1${suffix}`);
  const n2 = await start(`h2${suffix}`);
  const alice: SessionRef = { node: n1.id, shard: 0, connId: 1, user: 'alice', device: 'phone' };
  const bob: SessionRef = { node: n2.id, shard: 0, connId: 1, user: 'bob', device: 'phone' };
  n1.actors.handler.opened(alice);
  n2.actors.handler.opened(bob);
  const conv = directConversationId('alice', 'bob');
  const address = `conv/${conv}`;

  const answersTo = (n: Node, id: number) => n.frames.filter((f) => (f.t === 'sent' || f.t === 'error') && f.id === id);
  const send = (n: Node, s: SessionRef, id: number): void =>
    n.actors.handler.frame(s, { t: 'send', id, to: s.user === 'alice' ? 'bob' : 'alice', cmid: `c${id}`, body: new Uint8Array([id]) });
  /** Hands the lease to `to` atomically, with the directory's own register script (as a failover would). */
  const steal = async (to: Node) => {
    const owner = `dir:{${address}}:owner`;
    const epochKey = `dir:{${address}}:epoch`;
    const r = await admin.multi().del(owner).eval(REGISTER_LUA, 2, owner, epochKey, to.routing.activation.node, to.routing.activation.activationId, LEASE_MS).exec();
    const reply = r?.[1]?.[1] as string[] | undefined;
    t.equal(reply?.[0], '1', `${to.id} holds the lease now (epoch ${reply?.[3]})`);
    return Number(reply?.[3]);
  };
  const lostTakenOver = async () => Number((await registry.getSingleMetricAsString('ticks_cluster_leases_lost_total')).match(/reason="taken_over"} (\d+)/)?.[1] ?? 0);
  const lookup = () => new RedisDirectory({ redis: admin, leaseMs: LEASE_MS }).lookup(address);
  return { n1, n2, alice, bob, conv, store, answersTo, send, steal, lostTakenOver, lookup };
}

t.test('a lease stolen while sends wait behind a slow commit: the new owner answers every one, once', async (t) => {
  const { n1, n2, alice, bob, conv, store, answersTo, send, steal, lostTakenOver, lookup } = await setUp(t, 'ho1');
  send(n1, alice, 1);
  await waitUntil(() => answersTo(n1, 1).length > 0, 'the first send to be answered');
  t.match(answersTo(n1, 1), [{ t: 'sent', seq: 1 }], 'n1 registers the conversation and commits seq 1');
  const first = await lookup();
  t.equal(first?.node, `${n1.id}.0`, 'n1 owns the conversation');

  n1.gates.append.close();
  const fromAlice = [2, 3, 4, 5, 6, 7, 8, 9];
  const fromBob = [10, 11, 12];
  for (const id of fromAlice) send(n1, alice, id);
  await waitUntil(() => n1.gates.append.entered === 1, 'the commit of send 2 to reach the store and be held');
  for (const id of fromBob) send(n2, bob, id);
  // Bob's sends travel to n1 over the Redis bus; give them time to queue there.
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    [...fromAlice, ...fromBob].filter((id) => answersTo(id <= 9 ? n1 : n2, id).length > 0),
    [],
    'no send is answered while the commit is held',
  );

  const lostBefore = await lostTakenOver();
  const epoch = await steal(n2);
  t.ok(epoch > first!.epoch, `the new owner's epoch ${epoch} is above the old ${first!.epoch}`);
  const all = (): number[] => [...fromAlice, ...fromBob].filter((id) => answersTo(id <= 9 ? n1 : n2, id).length === 0);
  await waitUntil(() => all().length === 0, 'every held send to be answered', () => `unanswered ${JSON.stringify(all())}; n1 ${JSON.stringify(n1.frames)}; n2 ${JSON.stringify(n2.frames)}`);
  t.equal(await lostTakenOver(), lostBefore + 1, 'n1 counted the lease as taken over');
  t.equal(n1.routing.stats().owned, 0, 'n1 owns nothing');
  t.equal(n2.routing.stats().owned, 1, 'n2 owns the conversation');
  t.equal(n1.landed, 1, 'n1 landed nothing after its first commit: its held commit is still held');

  // The old owner's held commit is released: the new owner's epoch fences it, and nobody answers it.
  n1.gates.append.opened();
  await new Promise((r) => setTimeout(r, 300));
  t.equal(n1.landed, 1, 'the released commit of the old owner did not land (fenced)');

  const answers = new Map<number, ServerFrame[]>();
  for (const id of [1, ...fromAlice, ...fromBob]) answers.set(id, answersTo(id <= 9 ? n1 : n2, id));
  t.same(
    [...answers].filter(([, a]) => a.length !== 1 || a[0]!.t !== 'sent').map(([id, a]) => ({ id, a })),
    [],
    'every send has exactly one answer, and it is `sent`',
  );
  const page = await store.readForward(conv, 0, 100);
  t.same(page.messages.map((m) => m.seq), Array.from({ length: 12 }, (_, i) => i + 1), 'the store holds seqs 1..12, dense');
  t.same(page.messages.map((m) => m.clientMsgId).sort(), [...answers.keys()].map((id) => `c${id}`).sort(), 'each send is in the store exactly once');
  for (const m of page.messages) {
    const a = answers.get(Number(m.clientMsgId.slice(1)))![0]!;
    if (a.t !== 'sent' || a.seq !== m.seq || a.mid !== m.messageId) t.fail(`${m.clientMsgId} is at seq ${m.seq} but was answered ${JSON.stringify(a)}`);
  }
  t.same(
    fromAlice.map((id) => page.messages.find((m) => m.clientMsgId === `c${id}`)!.seq),
    [...fromAlice.map((id) => page.messages.find((m) => m.clientMsgId === `c${id}`)!.seq)].sort((a, b) => a - b),
    "alice's sends keep their order across the handover",
  );
  // Every seq at least once: bob's test socket never dacks, so a copy may come again after
  // actors.deliveryRetryMs (1 s), which a loaded run reaches before this check (counting frames failed).
  const bobSeqs = (): number[] => [...new Set(n2.frames.flatMap((f) => (f.t === 'msg' ? [f.seq] : [])))].sort((a, b) => a - b);
  await waitUntil(
    () => JSON.stringify(bobSeqs()) === JSON.stringify([1, ...fromAlice].map((_, i) => i + 1)),
    "bob to get alice's messages live from the new owner",
    () => JSON.stringify(n2.frames.filter((f) => f.t === 'msg').map((f) => ('seq' in f ? f.seq : null))),
  );
});

t.test('the held commit lands before the new owner opens its writer: the new owner answers it `dup`', async (t) => {
  const { n1, n2, alice, conv, store, answersTo, send, steal, lookup } = await setUp(t, 'ho2');
  send(n1, alice, 1);
  await waitUntil(() => answersTo(n1, 1).length > 0, 'the first send to be answered');
  const first = await lookup();
  t.equal(first?.node, `${n1.id}.0`, 'n1 owns the conversation');

  n1.gates.append.close();
  send(n1, alice, 2);
  await waitUntil(() => n1.gates.append.entered === 1, 'the commit of send 2 to be held');
  send(n1, alice, 3);
  send(n1, alice, 4);
  n2.gates.open.close();
  await steal(n2);
  await waitUntil(() => n2.gates.open.entered === 1, 'the new owner to activate with the handed-over sends and wait to open its writer');
  t.equal(n1.routing.stats().owned, 0, 'n1 gave the lease up');
  // The old owner's commit lands now: no writer with a higher epoch exists yet, so the store takes it.
  n1.gates.append.opened();
  await waitUntil(() => n1.landed === 2, 'the held commit (send 2) to land');
  await new Promise((r) => setTimeout(r, 100));
  t.same(answersTo(n1, 2), [], 'the old owner does not ack the commit it held when it lost the lease');
  n2.gates.open.opened();
  await waitUntil(() => [2, 3, 4].every((id) => answersTo(n1, id).length > 0), 'sends 2..4 to be answered', () => JSON.stringify(n1.frames));
  const page = await store.readForward(conv, 0, 100);
  t.same(page.messages.map((m) => [m.seq, m.clientMsgId]), [[1, 'c1'], [2, 'c2'], [3, 'c3'], [4, 'c4']], 'seqs dense, each send once');
  t.match(answersTo(n1, 2), [{ t: 'sent', seq: 2, dup: true, mid: page.messages[1]!.messageId }], 'send 2 is answered once, by the new owner, as the duplicate of what the old commit wrote');
  t.match(answersTo(n1, 3), [{ t: 'sent', seq: 3, dup: false }], 'send 3 (queued) is committed by the new owner');
  t.match(answersTo(n1, 4), [{ t: 'sent', seq: 4, dup: false }], 'send 4 (queued) is committed by the new owner');
  t.equal((await lookup())?.node, `${n2.id}.0`, 'n2 owns the conversation');
});
