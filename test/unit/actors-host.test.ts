import t from 'tap';
import { fnv1a32, shardOf } from '../../src/actors/address.js';
import { ManualClock } from '../../src/actors/clock.js';
import { CursorBatcher } from '../../src/actors/cursor-batcher.js';
import { ClockEpochSource } from '../../src/actors/epochs.js';
import { ActorHost, type Actor, type ActorContext, type RejectReason } from '../../src/actors/host.js';
import { silentLog } from '../../src/actors/log.js';
import { decodeThreadFrame, encodeThreadFrame, ThreadFrameError } from '../../src/actors/thread-frames.js';
import type { Store } from '../../src/store/store.js';
import type { CursorUpdate } from '../../src/store/types.js';

const settle = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

type Msg = { t: 'work'; v: string } | { t: 'self'; v: string } | { t: 'stop' } | { t: 'busy'; on: boolean };
type Msgs = { conv: Msg; user: Msg };

interface World {
  host: ActorHost<Msgs>;
  clock: ManualClock;
  log: string[];
  rejected: [string, string, RejectReason][];
  activations: number;
  activate: () => Promise<void>;
  canPassivate: boolean;
  /** What the actors hand back on a hand-off (Actor.handBack). */
  held: Msg[];
}

function world(opts: { capacity?: number; idleMs?: number } = {}): World {
  const clock = new ManualClock();
  const w: World = {
    host: new ActorHost<Msgs>({ mailboxCapacity: opts.capacity ?? 100, turnBudget: 8, idlePassivateMs: opts.idleMs ?? 1000, clock, log: silentLog }),
    clock,
    log: [],
    rejected: [],
    activations: 0,
    activate: () => Promise.resolve(),
    canPassivate: true,
    held: [],
  };
  class TestActor implements Actor<Msg> {
    private busyFlag = false;
    private readonly gen: number;
    constructor(private readonly ctx: ActorContext<Msg>) {
      this.gen = ++w.activations;
    }
    activate(): Promise<void> {
      return w.activate();
    }
    receive(m: Msg): void {
      w.log.push(`${this.ctx.key}#${this.gen} ${m.t}${'v' in m ? ` ${m.v}` : ''}`);
      if (m.t === 'stop') {
        this.ctx.self({ t: 'self', v: 'dies-with-activation' });
        this.ctx.deactivate('test');
      }
      if (m.t === 'busy') this.busyFlag = m.on;
    }
    busy(): boolean {
      return this.busyFlag;
    }
    canPassivate(): boolean {
      return w.canPassivate;
    }
    deactivated(reason: string): void {
      w.log.push(`${this.ctx.key}#${this.gen} deactivated ${reason}`);
    }
    handBack(): Msg[] {
      w.log.push(`${this.ctx.key}#${this.gen} hands back ${w.held.length}`);
      const held = w.held;
      w.held = [];
      return held;
    }
  }
  w.host.define('conv', {
    create: (ctx) => new TestActor(ctx),
    lane: (m) => (m.t === 'self' ? 'system' : 'user'),
    reject: (key, m, reason) => void w.rejected.push([key, m.t, reason]),
  });
  return w;
}

t.test('activation on first message; messages wait until the state is loaded', async (t) => {
  const w = world();
  let loaded!: () => void;
  w.activate = () => new Promise<void>((r) => (loaded = r));
  w.host.tell('conv', 'c1', { t: 'work', v: 'a' });
  w.host.tell('conv', 'c1', { t: 'work', v: 'b' });
  await settle();
  t.same(w.log, [], 'nothing runs before activation finished');
  t.equal(w.host.count('conv'), 1);
  loaded();
  await settle();
  t.same(w.log, ['c1#1 work a', 'c1#1 work b']);
  t.equal(w.activations, 1, 'one activation for both messages');
});

t.test('idle actors are passivated after idlePassivateMs; activity postpones it', async (t) => {
  const w = world({ idleMs: 1000 });
  w.host.tell('conv', 'c1', { t: 'work', v: 'a' });
  await settle();
  w.clock.advance(600);
  w.host.tell('conv', 'c1', { t: 'work', v: 'b' });
  await settle();
  w.clock.advance(600);
  t.ok(w.host.isActive('conv', 'c1'), 'still active: it was used 600 ms ago');
  w.clock.advance(400);
  t.notOk(w.host.isActive('conv', 'c1'), 'passivated 1000 ms after its last message');
  t.match(w.log.at(-1), /deactivated idle/);
  w.host.tell('conv', 'c1', { t: 'work', v: 'c' });
  await settle();
  t.equal(w.log.at(-1), 'c1#2 work c', 'the next message re-activates it');
});

t.test('an actor that cannot passivate stays active', async (t) => {
  const w = world({ idleMs: 1000 });
  w.canPassivate = false;
  w.host.tell('conv', 'c1', { t: 'work', v: 'a' });
  await settle();
  w.clock.advance(10_000);
  t.ok(w.host.isActive('conv', 'c1'));
});

t.test('deactivate hands queued messages to a fresh activation and drops self messages', async (t) => {
  const w = world();
  w.host.tell('conv', 'c1', { t: 'stop' });
  w.host.tell('conv', 'c1', { t: 'work', v: 'after' });
  await settle();
  t.same(w.log, ['c1#1 stop', 'c1#1 deactivated test', 'c1#2 work after']);
});

t.test('deactivate with a hand-off passes what the actor held, then its mailbox, and activates nothing', async (t) => {
  const w = world();
  let loaded!: () => void;
  w.activate = () => new Promise<void>((r) => (loaded = r));
  w.host.tell('conv', 'c1', { t: 'work', v: 'queued-1' });
  w.host.tell('conv', 'c1', { t: 'work', v: 'queued-2' });
  w.held = [{ t: 'work', v: 'accepted' }];
  const handed: Msg[][] = [];
  w.host.deactivate('conv', 'c1', 'lease lost', (msgs) => handed.push(msgs));
  loaded();
  await settle();
  t.same(handed, [[{ t: 'work', v: 'accepted' }, { t: 'work', v: 'queued-1' }, { t: 'work', v: 'queued-2' }]], 'held messages first, then the mailbox, once');
  t.same(w.log, ['c1#1 hands back 1', 'c1#1 deactivated lease lost'], 'handBack before deactivated; nothing processed');
  t.equal(w.activations, 1, 'no fresh activation');
  t.notOk(w.host.isActive('conv', 'c1'), 'the activation is gone');
  w.host.deactivate('conv', 'nobody', 'x', () => t.fail('no activation, no hand-off'));
  // Without a hand-off the actor is never asked (its held work is its own to answer).
  w.activate = () => Promise.resolve();
  w.held = [{ t: 'work', v: 'kept' }];
  w.host.tell('conv', 'c2', { t: 'stop' });
  await settle();
  t.same(w.held, [{ t: 'work', v: 'kept' }], 'handBack is only called for a hand-off');
});

t.test('a failed activation rejects what waited and the next message tries again', async (t) => {
  const w = world();
  w.activate = () => Promise.reject(new Error('store down'));
  w.host.tell('conv', 'c1', { t: 'work', v: 'a' });
  w.host.tell('conv', 'c1', { t: 'work', v: 'b' });
  await settle();
  t.same(w.rejected, [
    ['c1', 'work', 'activation_failed'],
    ['c1', 'work', 'activation_failed'],
  ]);
  t.notOk(w.host.isActive('conv', 'c1'));
  w.activate = () => Promise.resolve();
  w.host.tell('conv', 'c1', { t: 'work', v: 'c' });
  await settle();
  t.same(w.log, ['c1#2 work c']);
});

t.test('a full mailbox rejects with mailbox_full', async (t) => {
  const w = world({ capacity: 16 });
  for (let i = 0; i < 17; i++) w.host.tell('conv', 'c1', { t: 'work', v: String(i) });
  t.same(w.rejected, [['c1', 'work', 'mailbox_full']]);
  await settle(10);
  t.equal(w.log.length, 16);
});

t.test('drain waits for busy actors, ends every activation, then refuses work', async (t) => {
  const w = world();
  w.host.tell('conv', 'c1', { t: 'busy', on: true });
  w.host.tell('conv', 'c2', { t: 'work', v: 'x' });
  await settle();
  let drained = false;
  const d = w.host.drain().then(() => (drained = true));
  await settle();
  t.equal(drained, false, 'c1 has work in flight');
  w.host.tell('conv', 'c1', { t: 'busy', on: false });
  await d;
  t.equal(drained, true);
  t.equal(w.host.count('conv'), 0);
  w.host.tell('conv', 'c1', { t: 'work', v: 'late' });
  t.same(w.rejected, [['c1', 'work', 'shutting_down']]);
});

t.test('an idle actor with a dormant record sleeps as that record and wakes from it in order', async (t) => {
  const clock = new ManualClock();
  const host = new ActorHost<Msgs>({ mailboxCapacity: 100, turnBudget: 8, idlePassivateMs: 1000, clock, log: silentLog });
  const seen: string[] = [];
  let created = 0;
  const deactivated: string[] = [];
  // State: the values seen so far; it may sleep unless told to hold on ('busy' on).
  class Counter implements Actor<Msg> {
    readonly state: { values: string[] };
    hold = false;
    constructor(
      private readonly ctx: ActorContext<Msg>,
      record?: object,
    ) {
      created++;
      this.state = (record as { values: string[] } | undefined) ?? { values: [] };
    }
    activate(): Promise<void> {
      return Promise.resolve();
    }
    receive(m: Msg): void {
      if (m.t === 'work') this.state.values.push(m.v);
      if (m.t === 'busy') this.hold = m.on;
      seen.push(`${this.ctx.key} ${m.t} [${this.state.values.join(',')}]`);
    }
    busy(): boolean {
      return false;
    }
    canPassivate(): boolean {
      return false;
    }
    deactivated(reason: string): void {
      deactivated.push(reason);
    }
  }
  host.define('user', {
    create: (ctx, record) => new Counter(ctx, record),
    dormant: (a) => ((a as Counter).hold ? null : (a as Counter).state),
    lane: () => 'user',
    reject: () => {},
  });
  host.tell('user', 'u1', { t: 'work', v: 'a' });
  host.tell('user', 'u1', { t: 'work', v: 'b' });
  await settle();
  t.notOk(host.isActive('user', 'u1'), 'no activation while idle');
  t.ok(host.isDormant('user', 'u1'), 'a dormant record instead');
  t.equal(host.count('user'), 1, 'still hosted here');
  host.tell('user', 'u1', { t: 'work', v: 'c' });
  host.tell('user', 'u1', { t: 'work', v: 'd' });
  await settle();
  t.same(seen, ['u1 work [a]', 'u1 work [a,b]', 'u1 work [a,b,c]', 'u1 work [a,b,c,d]'], 'woken with its state; messages in order');
  t.equal(created, 2, 'one activation, one wake-up');
  t.same(deactivated, [], 'going dormant is not a deactivation');
  host.tell('user', 'u1', { t: 'busy', on: true });
  await settle();
  t.ok(host.isActive('user', 'u1'), 'an actor whose dormant() is null stays active');
  clock.advance(10_000);
  t.ok(host.isActive('user', 'u1'), 'and is not passivated (canPassivate is false)');
  host.tell('user', 'u1', { t: 'busy', on: false });
  host.tell('user', 'u2', { t: 'work', v: 'x' });
  await settle();
  t.equal(host.dormantCount('user'), 2);
  await host.drain();
  t.equal(host.count('user'), 0, 'drain drops dormant records');
});

t.test('fnv1a32 matches the reference vectors and placement is stable', async (t) => {
  t.equal(fnv1a32(''), 0x811c9dc5);
  t.equal(fnv1a32('a'), 0xe40c292c);
  t.equal(fnv1a32('foobar'), 0xbf9cf968);
  t.equal(fnv1a32('é'), fnv1a32Bytes(Buffer.from('é', 'utf8')), 'hashes the UTF-8 bytes');
  t.equal(fnv1a32('😀x'), fnv1a32Bytes(Buffer.from('😀x', 'utf8')));
  t.equal(shardOf('d:alice:bob', 4), shardOf('d:alice:bob', 4));
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[shardOf(`user${i}`, 4)]! += 1;
  for (const c of counts) t.ok(c > 800 && c < 1200, `spread evenly (${c})`);
});

function fnv1a32Bytes(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const x of b) h = Math.imul(h ^ x, 0x01000193);
  return h >>> 0;
}

t.test('thread frames round-trip and refuse other versions', async (t) => {
  const conn = { node: 'n1', shard: 1, connId: 7, user: 'alice', device: 'phone' };
  const bytes = encodeThreadFrame({ v: 1, t: 'actor', kind: 'user', key: 'alice', msg: { t: 'receipt', conv: 'd:a:b', kind: 'read', user: 'bob', device: 'x', seq: 3 } });
  t.same(decodeThreadFrame(bytes), { v: 1, t: 'actor', kind: 'user', key: 'alice', msg: { t: 'receipt', conv: 'd:a:b', kind: 'read', user: 'bob', device: 'x', seq: 3 } });
  const push = decodeThreadFrame(encodeThreadFrame({ v: 1, t: 'push', conn, frame: { t: 'pong', id: 1 } }));
  t.same(push, { v: 1, t: 'push', conn, frame: { t: 'pong', id: 1 } });
  const body = decodeThreadFrame(
    encodeThreadFrame({ v: 1, t: 'actor', kind: 'conv', key: 'c', msg: { t: 'send', session: conn, id: 1, cmid: 'm', body: new Uint8Array([1, 2, 3]) } }),
  );
  t.ok(body.t === 'actor' && body.msg.t === 'send' && body.msg.body instanceof Uint8Array && body.msg.body.length === 3, 'bytes stay bytes');
  const { Packr } = await import('msgpackr');
  t.throws(() => decodeThreadFrame(new Packr({ useRecords: false }).pack({ v: 2, t: 'push' })), ThreadFrameError);
  t.throws(() => decodeThreadFrame(new Packr({ useRecords: false }).pack({ v: 1, t: 'nope' })), ThreadFrameError);
  t.throws(() => decodeThreadFrame(new Uint8Array([0xc1])), ThreadFrameError);
});

t.test('clock epochs strictly increase even when the clock stands still', async (t) => {
  const clock = new ManualClock(1_000);
  const e = new ClockEpochSource(() => clock.now());
  const a = await e.next();
  const b = await e.next();
  t.equal(a, 1_000_000);
  t.equal(b, 1_000_001);
  clock.advance(1);
  t.equal(await e.next(), 1_001_000);
});

t.test('cursor writes are merged per device and conversation, flushed per tick, retried on failure', async (t) => {
  const clock = new ManualClock();
  const writes: CursorUpdate[][] = [];
  let fail = true;
  const store = {
    advanceDelivered: (u: CursorUpdate[]) => {
      writes.push(u);
      return fail ? Promise.reject(new Error('down')) : Promise.resolve();
    },
  } as unknown as Store;
  const b = new CursorBatcher({ store, clock, log: silentLog, flushMs: 200 });
  b.add({ userId: 'u', deviceId: 'd', conversationId: 'c', seq: 3 });
  b.add({ userId: 'u', deviceId: 'd', conversationId: 'c', seq: 5 });
  b.add({ userId: 'u', deviceId: 'd', conversationId: 'c', seq: 4 });
  b.add({ userId: 'u', deviceId: 'e', conversationId: 'c', seq: 1 });
  clock.advance(199);
  t.equal(writes.length, 0);
  clock.advance(1);
  await settle();
  t.same(writes[0], [
    { userId: 'u', deviceId: 'd', conversationId: 'c', seq: 5 },
    { userId: 'u', deviceId: 'e', conversationId: 'c', seq: 1 },
  ]);
  t.equal(b.size, 2, 'a failed write is kept');
  fail = false;
  clock.advance(200);
  await settle();
  t.equal(writes.length, 2);
  t.equal(b.size, 0);
  b.add({ userId: 'u', deviceId: 'd', conversationId: 'c', seq: 9 });
  await b.flush();
  t.same(writes[2], [{ userId: 'u', deviceId: 'd', conversationId: 'c', seq: 9 }], 'flush writes at once (drain)');
});

t.test('the MessagePort link carries frames between shards without detaching the encoder buffer', async (t) => {
  const { MessageChannel } = await import('node:worker_threads');
  const { portShardLink, receiveFromPorts } = await import('../../src/actors/port-link.js');
  const ch = new MessageChannel();
  const link0 = portShardLink([undefined, ch.port1]);
  const got: unknown[] = [];
  receiveFromPorts([ch.port2, undefined], (b) => got.push(decodeThreadFrame(b)));
  const conn = { node: 'n', shard: 1, connId: 1, user: 'u', device: 'd' };
  const first = encodeThreadFrame({ v: 1, t: 'attached', conn });
  link0.post(1, first);
  link0.post(1, encodeThreadFrame({ v: 1, t: 'close', conn, code: 4000, reason: 'bye' }));
  t.equal(decodeThreadFrame(first).t, 'attached', 'the posted bytes are still readable (cloned, not transferred)');
  while (got.length < 2) await new Promise((r) => setTimeout(r, 1));
  t.same(got, [
    { v: 1, t: 'attached', conn },
    { v: 1, t: 'close', conn, code: 4000, reason: 'bye' },
  ]);
  ch.port1.close();
  t.throws(() => link0.post(0, first), /no link to shard 0/);
});

t.test('a concurrency limit runs at most max tasks and keeps FIFO order', async (t) => {
  const { ConcurrencyLimit } = await import('../../src/actors/sync.js');
  const limit = new ConcurrencyLimit(2);
  const order: string[] = [];
  const gates: (() => void)[] = [];
  const task = (name: string) => () =>
    new Promise<void>((r) => {
      order.push(`start ${name}`);
      gates.push(() => {
        order.push(`end ${name}`);
        r();
      });
    });
  const all = Promise.all(['a', 'b', 'c', 'd'].map((n) => limit.run(task(n))));
  await settle();
  t.same(order, ['start a', 'start b']);
  t.equal(limit.queued, 2);
  gates.shift()!();
  await settle();
  t.same(order, ['start a', 'start b', 'end a', 'start c']);
  while (gates.length > 0) {
    gates.shift()!();
    await settle();
  }
  await all;
  t.same(order.filter((x) => x.startsWith('start')), ['start a', 'start b', 'start c', 'start d']);
});
