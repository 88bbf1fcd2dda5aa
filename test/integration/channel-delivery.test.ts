/**
 * Live channel delivery across nodes in one process (src/cluster/channel-delivery.ts): three
 * "nodes" of two shard threads each, wired like real ones through a memory bus hub (one bus per
 * node, counted by a wrapper around the real MemoryBus), one shared memory channel-interest
 * registry and session registry, the embedded store, thread frames encoded and decoded between
 * shards. uWS topics are recorded by a table of sockets (the real uWS path runs in
 * test/integration/cluster-channels.test.ts).
 *
 * - one post goes out as one bus publish per node that has subscribers and none to a node without;
 *   inside a node each shard publishes it once to its topic; every subscriber socket gets it once;
 * - joins and leaves change the live subscriptions of a user's sockets on any node, and the
 *   registry follows (a node whose last subscriber left gets nothing again);
 * - closing the last subscriber socket of a thread removes the thread from the registry.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { ChannelTopics } from '../../src/actors/channel-fanout.js';
import type { DeliveredEntry } from '../../src/actors/messages.js';
import { silentLog } from '../../src/actors/log.js';
import type { SessionRef } from '../../src/actors/session.js';
import { decodeThreadFrame, encodeThreadFrame, type ChannelThreadFrame, type ThreadFrame } from '../../src/actors/thread-frames.js';
import type { Bus, BusSubscription, FrameHandler } from '../../src/cluster/bus/bus.js';
import { MemoryBus, MemoryBusHub } from '../../src/cluster/bus/memory-bus.js';
import { ClusterChannels, nodeOfEndpoint } from '../../src/cluster/channel-delivery.js';
import { MemoryChannelInterest } from '../../src/cluster/channels/memory-interest.js';
import { MemorySessions } from '../../src/cluster/sessions/memory-sessions.js';
import { decodeServerFrame } from '../../src/protocol/codec.js';
import type { MsgFrame } from '../../src/protocol/client-frames.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import type { UserConversation } from '../../src/store/types.js';

const SHARDS = 2;
const TTL_MS = 30_000;

/** The real memory bus, counting what each node publishes (by target endpoint) and receives. */
class CountingBus implements Bus {
  readonly published = new Map<string, number>();
  received = 0;
  constructor(private readonly inner: MemoryBus) {}
  subscribe(node: string, onFrame: FrameHandler): Promise<BusSubscription> {
    return this.inner.subscribe(node, (bytes) => {
      this.received++;
      onFrame(bytes);
    });
  }
  publish(target: string, bytes: Uint8Array): Promise<number> {
    this.published.set(target, (this.published.get(target) ?? 0) + 1);
    return this.inner.publish(target, bytes);
  }
  publishMany(targets: Iterable<string>, bytes: Uint8Array): Promise<Map<string, number>> {
    return this.inner.publishMany(targets, bytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The sockets of one shard thread and their topics; `got` records each msg frame per socket. */
class Sockets implements ChannelTopics {
  readonly open = new Map<number, SessionRef>();
  readonly topics = new Map<string, Set<number>>();
  readonly got = new Map<number, MsgFrame[]>();
  topicPublishes = 0;
  /** Topic publishes per event-loop turn in which there was any (uWS writes one turn's publishes to a socket as one write). */
  readonly perTurn: number[] = [];
  private inTurn = false;
  subscribe(s: SessionRef, topic: string): boolean {
    if (this.open.get(s.connId)?.device !== s.device) return false;
    let subs = this.topics.get(topic);
    if (subs === undefined) this.topics.set(topic, (subs = new Set()));
    subs.add(s.connId);
    return true;
  }
  unsubscribe(s: SessionRef, topic: string): boolean {
    return this.topics.get(topic)?.delete(s.connId) ?? false;
  }
  publish(topic: string, bytes: Uint8Array, except?: SessionRef): void {
    this.topicPublishes++;
    if (!this.inTurn) {
      this.inTurn = true;
      this.perTurn.push(0);
      setImmediate(() => (this.inTurn = false));
    }
    this.perTurn[this.perTurn.length - 1]!++;
    const r = decodeServerFrame(bytes);
    if (!r.ok || r.frame.t !== 'msg') throw new Error('a topic publish that is not a msg frame');
    for (const id of this.topics.get(topic) ?? []) {
      if (id === except?.connId) continue;
      (this.got.get(id) ?? this.got.set(id, []).get(id)!).push(r.frame);
    }
  }
  subscribers(topic: string): number {
    return this.topics.get(topic)?.size ?? 0;
  }
  close(connId: number): void {
    this.open.delete(connId);
    for (const subs of this.topics.values()) subs.delete(connId);
  }
}

interface Thread {
  node: string;
  shard: number;
  channels: ClusterChannels;
  sockets: Sockets;
}

async function world(t: Test, nodes: string[], publishWindowMs = 0) {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-channels-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  const hub = new MemoryBusHub();
  const interest = new MemoryChannelInterest();
  const sessions = new MemorySessions();
  const buses = new Map<string, CountingBus>();
  const threads: Thread[] = [];
  const thread = (node: string, shard: number): Thread => threads.find((x) => x.node === node && x.shard === shard)!;
  for (const node of nodes) {
    const bus = new CountingBus(new MemoryBus(hub));
    buses.set(node, bus);
    for (let shard = 0; shard < SHARDS; shard++) {
      const sockets = new Sockets();
      const channels = new ClusterChannels({ nodeId: node, shard, bus, interest, sessions, store, topics: sockets, heartbeatMs: 1000, ttlMs: TTL_MS, publishWindowMs, log: silentLog });
      threads.push({ node, shard, channels, sockets });
    }
  }
  const deliver = (to: Thread, frame: ThreadFrame): void => {
    const bytes = encodeThreadFrame(frame);
    setImmediate(() => to.channels.receive(decodeThreadFrame(bytes) as ChannelThreadFrame));
  };
  for (const th of threads) {
    th.channels.start({
      shardCount: SHARDS,
      useChannels: () => {},
      close: () => {},
      postToShard: (shard, frame) => deliver(thread(th.node, shard), frame),
    });
    await buses.get(th.node)!.subscribe(th.channels.endpoint, (bytes) => th.channels.receive(decodeThreadFrame(bytes) as ChannelThreadFrame));
  }
  t.teardown(async () => {
    for (const th of threads) await th.channels.close();
    for (const b of buses.values()) await b.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let nextConn = 1;
  return {
    store,
    interest,
    buses,
    thread,
    threads,
    /** Opens a socket of (user, device) on node/shard: session registry, then channel subscriptions. */
    async connect(user: string, device: string, node: string, shard: number, register = true): Promise<SessionRef> {
      const ref: SessionRef = { node, shard, connId: nextConn++, user, device };
      const th = thread(node, shard);
      th.sockets.open.set(ref.connId, ref);
      if (register) await sessions.put(user, device, { node, connId: `${shard}:${ref.connId}` }, TTL_MS);
      await th.channels.opened(ref);
      return ref;
    },
    async disconnect(ref: SessionRef): Promise<void> {
      const th = thread(ref.node, ref.shard);
      th.sockets.close(ref.connId);
      await sessions.remove(ref.user, ref.device, { node: ref.node, connId: `${ref.shard}:${ref.connId}` });
      th.channels.closed(ref);
    },
    got(ref: SessionRef): MsgFrame[] {
      return thread(ref.node, ref.shard).sockets.got.get(ref.connId) ?? [];
    },
    /** Bus publishes of every node to endpoints of `node`. */
    publishesTo(node: string): number {
      let n = 0;
      for (const b of buses.values()) for (const [ep, c] of b.published) if (nodeOfEndpoint(ep) === node) n += c;
      return n;
    },
    resetCounts(): void {
      for (const b of buses.values()) {
        b.published.clear();
        b.received = 0;
      }
    },
  };
}

async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise<void>((res) => setTimeout(res, 2));
  }
}

/** Lets queued frames (setImmediate hops, bus deliveries) run out. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((res) => setTimeout(res, 10));
}

let seq = 0;
function post(from: string, n: number): DeliveredEntry[] {
  return Array.from({ length: n }, () => {
    seq++;
    return { seq, mid: `m${seq}`, from, fdev: 'phone', body: new Uint8Array([seq % 256]), ts: Date.now(), cmid: `c${seq}` };
  });
}

async function channel(store: EmbeddedStore, id: string, owner: string, members: string[]): Promise<void> {
  await store.createConversation({
    id,
    kind: 'channel',
    createdBy: owner,
    createdAtMs: Date.now(),
    members: [{ userId: owner, role: 'owner' }, ...members.map((userId) => ({ userId, role: 'member' as const }))],
  });
}

t.test('a post goes once to each node with subscribers, once to each topic there, and not at all to a node without', async (t) => {
  const w = await world(t, ['na', 'nb', 'nc']);
  const conv = 'c:one-per-node';
  const subscribers = ['s1', 's2', 's3', 's4', 's5'];
  await channel(w.store, conv, 'owner', subscribers);
  // Subscribers on na (both shards) and nb (both shards); nc holds a socket of a non-member only.
  const refs = [
    await w.connect('s1', 'phone', 'na', 0),
    await w.connect('s2', 'phone', 'na', 1),
    await w.connect('s3', 'phone', 'nb', 0),
    await w.connect('s4', 'phone', 'nb', 1),
    await w.connect('s4', 'laptop', 'nb', 1),
    await w.connect('s5', 'phone', 'nb', 0),
  ];
  const outsider = await w.connect('outsider', 'phone', 'nc', 0);
  const owner = await w.connect('owner', 'phone', 'nc', 1);
  t.same((await w.interest.list(conv)).sort(), ['na.0', 'na.1', 'nb.0', 'nb.1', 'nc.1'], 'the registry lists the threads with subscribers (the owner follows too)');
  await w.disconnect(owner);
  await until(async () => !(await w.interest.list(conv)).includes('nc.1'), 'nc.1 to leave the registry');

  // The conversation actor of the channel runs on na.1 here.
  const msgs = post('owner', 3);
  w.resetCounts();
  w.thread('na', 1).channels.publish(conv, msgs);
  await until(() => refs.every((r) => w.got(r).length === 3), 'every subscriber socket to get the 3 posts');
  await settle();

  t.equal(w.publishesTo('nb'), 1, 'one bus publish reached nb, whatever its number of subscribers and shards');
  t.equal(w.publishesTo('na'), 0, 'the publishing node reaches its own other shard over the link, not the bus');
  t.equal(w.publishesTo('nc'), 0, 'nc, with no subscriber, got no publish');
  t.equal(w.buses.get('nc')!.received, 0, 'and nc received nothing on the bus');
  t.equal(w.thread('nc', 0).sockets.topicPublishes + w.thread('nc', 1).sockets.topicPublishes, 0, 'no topic publish on nc');
  for (const th of w.threads.filter((x) => x.node !== 'nc')) t.equal(th.sockets.topicPublishes, 3, `${th.node}.${th.shard} published each post once to its topic`);
  for (const r of refs) {
    t.same(
      w.got(r).map((f) => f.seq),
      msgs.map((m) => m.seq),
      `${r.user}/${r.device}@${r.node}.${r.shard} got each post exactly once, in order`,
    );
  }
  const f = w.got(refs[2]!)[0]!;
  t.equal(f.kind, 'channel');
  t.equal(f.conv, conv);
  t.equal(f.mid, msgs[0]!.mid);
  t.notOk('cmid' in f, 'the topic frame carries no cmid');
  t.same(w.got(outsider), [], 'a non-member socket gets nothing');
});

t.test('joins and leaves move the live subscriptions of every session of the user, on any node', async (t) => {
  const w = await world(t, ['na', 'nb', 'nc']);
  const conv = 'c:join-leave';
  await channel(w.store, conv, 'owner', ['s1']);
  const s1 = await w.connect('s1', 'phone', 'na', 0);
  const joinerPhone = await w.connect('joiner', 'phone', 'nc', 0);
  const joinerLaptop = await w.connect('joiner', 'laptop', 'nc', 1);
  t.same(await w.interest.list(conv), ['na.0']);

  // The conversation actor (on nb.0 here) writes the member row, then tells the fan-out.
  await w.store.putMember(conv, 'joiner', 'member', Date.now());
  w.thread('nb', 0).channels.membership(conv, 'joiner', true);
  await until(async () => (await w.interest.list(conv)).length === 3, 'both joiner threads in the registry');
  t.same((await w.interest.list(conv)).sort(), ['na.0', 'nc.0', 'nc.1']);

  w.resetCounts();
  const first = post('owner', 2);
  w.thread('nb', 0).channels.publish(conv, first);
  await until(() => w.got(joinerPhone).length === 2 && w.got(joinerLaptop).length === 2 && w.got(s1).length === 2, 'posts after the join');
  await settle();
  t.equal(w.publishesTo('nc'), 1, 'one publish to nc for its two subscribed threads');
  t.equal(w.publishesTo('na'), 1, 'one publish to na');
  t.equal(w.publishesTo('nb'), 0, 'nb (the poster, no subscribers) is not published to');

  await w.store.removeMember(conv, 'joiner');
  w.thread('nb', 0).channels.membership(conv, 'joiner', false);
  await until(async () => (await w.interest.list(conv)).length === 1, 'nc to leave the registry');
  w.resetCounts();
  const second = post('owner', 1);
  w.thread('nb', 0).channels.publish(conv, second);
  await until(() => w.got(s1).length === 3, 's1 gets the post after the leave');
  await settle();
  t.equal(w.publishesTo('nc'), 0, 'after the leave nc gets no publish');
  t.same(
    w.got(joinerPhone).map((f) => f.seq),
    first.map((m) => m.seq),
    'the joiner got exactly the posts made while it followed',
  );
});

t.test('a join reaches the session that asked even before the session registry lists it', async (t) => {
  const w = await world(t, ['na', 'nb']);
  const conv = 'c:join-via';
  await channel(w.store, conv, 'owner', []);
  const asking = await w.connect('joiner', 'phone', 'nb', 1, false);
  await w.store.putMember(conv, 'joiner', 'member', Date.now());
  w.thread('na', 0).channels.membership(conv, 'joiner', true, asking);
  await until(async () => (await w.interest.list(conv)).includes('nb.1'), 'the asking session to follow the channel');
  w.thread('na', 0).channels.publish(conv, post('owner', 1));
  await until(() => w.got(asking).length === 1, 'the post to reach the asking session');
  t.pass('reached');
});

t.test("the sending device does not get its own post from the topic; the sender's other devices do", async (t) => {
  const w = await world(t, ['na', 'nb']);
  const conv = 'c:own-post';
  await channel(w.store, conv, 'owner', ['s1']);
  const phone = await w.connect('owner', 'phone', 'nb', 0);
  const laptop = await w.connect('owner', 'laptop', 'nb', 0);
  const s1 = await w.connect('s1', 'phone', 'nb', 0);
  const msgs = post('owner', 2); // from owner/phone
  w.thread('na', 1).channels.publish(conv, msgs);
  await until(() => w.got(s1).length === 2 && w.got(laptop).length === 2, 'the posts to reach s1 and the laptop');
  await settle();
  t.same(w.got(phone), [], 'the sending phone got nothing from the topic');
});

t.test('the last subscriber socket of a thread to close takes the thread out of the registry', async (t) => {
  const w = await world(t, ['na', 'nb']);
  const conv = 'c:close';
  await channel(w.store, conv, 'owner', ['s1', 's2']);
  const a = await w.connect('s1', 'phone', 'nb', 1);
  const b = await w.connect('s2', 'phone', 'nb', 1);
  t.same(await w.interest.list(conv), ['nb.1']);
  await w.disconnect(a);
  t.same(await w.interest.list(conv), ['nb.1'], 'still one subscriber on the thread');
  await w.disconnect(b);
  await until(async () => (await w.interest.list(conv)).length === 0, 'the thread to leave the registry');
  w.resetCounts();
  w.thread('na', 0).channels.publish(conv, post('owner', 1));
  await settle();
  t.equal(w.publishesTo('nb'), 0, 'nothing is published to a node whose subscribers all left');
  t.equal(w.thread('nb', 1).channels.stats().sockets, 0, 'no socket state is left on the thread');
});

t.test('with a publish window, post batches that arrive within it reach each topic in one turn, in order, once', async (t) => {
  const WINDOW_MS = 300;
  const w = await world(t, ['na', 'nb'], WINDOW_MS);
  const conv = 'c:window';
  await channel(w.store, conv, 'owner', ['s1', 's2']);
  const local = await w.connect('s1', 'phone', 'na', 0);
  const remote = await w.connect('s2', 'phone', 'nb', 1);
  const first = post('owner', 2);
  const second = post('owner', 1);
  // Two commit batches of the channel's actor (on na.0), in separate turns.
  w.thread('na', 0).channels.publish(conv, first);
  await new Promise<void>((res) => setImmediate(res));
  w.thread('na', 0).channels.publish(conv, second);
  t.equal(w.thread('na', 0).sockets.topicPublishes, 0, 'nothing is published to the topic before the window ends');
  const all = [...first, ...second].map((m) => m.seq);
  await until(() => w.got(local).length === 3 && w.got(remote).length === 3, 'both subscribers to get the 3 posts', 5000);
  await settle();
  for (const r of [local, remote]) {
    t.same(w.got(r).map((f) => f.seq), all, `${r.node}.${r.shard} got each post exactly once, in order`);
    t.same(w.thread(r.node, r.shard).sockets.perTurn, [3], `${r.node}.${r.shard} published the 3 posts in one turn`);
  }
});

t.test('nodeOfEndpoint takes the shard after the last dot', async (t) => {
  t.equal(nodeOfEndpoint('n.a.3'), 'n.a');
  t.equal(nodeOfEndpoint('node-1.0'), 'node-1');
  t.equal(nodeOfEndpoint('nodot'), null);
  t.equal(nodeOfEndpoint('n.x'), null);
});

t.test('a leave that arrives while a new session reads its channels is not undone by that read', async (t) => {
  let release: (v: UserConversation[]) => void = () => {};
  const store = { listUserConversations: () => new Promise<UserConversation[]>((resolve) => (release = resolve)) };
  const sockets = new Sockets();
  const ch = new ClusterChannels({
    nodeId: 'solo',
    shard: 0,
    bus: new MemoryBus(new MemoryBusHub()),
    interest: new MemoryChannelInterest(),
    sessions: new MemorySessions(),
    store,
    topics: sockets,
    heartbeatMs: 1000,
    ttlMs: TTL_MS,
    singleNode: true,
    log: silentLog,
  });
  ch.start({ shardCount: 1, useChannels: () => {}, postToShard: () => {}, close: () => {} });
  t.teardown(() => ch.close());
  const ref: SessionRef = { node: 'solo', shard: 0, connId: 1, user: 'u', device: 'phone' };
  sockets.open.set(ref.connId, ref);
  const opened = ch.opened(ref);
  // The read started before the leave was written; the leave's chsub arrives before the read ends.
  ch.receive({ v: 1, t: 'chsub', conn: ref, conv: 'c:left', joined: false });
  release([
    { conversationId: 'c:left', kind: 'channel', role: 'member', joinedAtMs: 0, head: 0 },
    { conversationId: 'c:kept', kind: 'channel', role: 'member', joinedAtMs: 0, head: 0 },
  ]);
  await opened;
  t.equal(sockets.subscribers('ch:c:left'), 0, 'not subscribed to the channel it left');
  t.equal(sockets.subscribers('ch:c:kept'), 1, 'subscribed to the others');
});
