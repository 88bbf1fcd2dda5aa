/**
 * A small history checker for the actor layer: random sends, retries, dacks, disconnects,
 * reconnects, clock jumps and fencing by a foreign writer over 3 shards, with clients that follow the protocol (cursors, gap
 * buffering, sync rounds). At the end every device syncs, and the checker verifies:
 * - every acked send is stored once, with the acked seq and mid;
 * - every device holds every message of its conversations, and agrees with the store on each mid;
 * - within one session, live `msg` frames of a conversation arrive in seq order (redeliveries aside).
 */
import t from 'tap';
import { convMetrics } from '../../src/actors/metrics.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { bytes, settle, World, type Device } from './actors-harness.js';

function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Ack {
  conv: string;
  seq: number;
  mid: string;
}

class Client {
  readonly have = new Map<string, number>();
  readonly seen = new Map<string, Map<number, string>>();
  readonly acks = new Map<string, Ack>();
  readonly outbox = new Map<number, { to: string; cmid: string }>();
  session: Device | null = null;
  private read = 0;
  syncing = false;
  caughtUp = false;
  violations: string[] = [];
  private liveTop = new Map<string, number>();

  constructor(
    readonly user: string,
    readonly device: string,
  ) {}

  get online(): boolean {
    return this.session !== null && this.session.open;
  }

  connect(w: World, shard: number): void {
    this.session = w.device(this.user, this.device, shard).connect();
    this.read = 0;
    this.liveTop.clear();
    this.caughtUp = false;
    this.sync();
    for (const [id, o] of this.outbox) this.session.send({ t: 'send', id, to: o.to, cmid: o.cmid, body: bytes(o.cmid) });
  }

  sync(): void {
    this.syncing = true;
    this.session!.send({ t: 'sync', id: 0, cursors: Object.fromEntries(this.have) });
  }

  /** Takes the frames that arrived since the last call. */
  pump(dack: boolean): void {
    const s = this.session;
    if (s === null) return;
    for (; this.read < s.frames.length; this.read++) {
      const f = s.frames[this.read]!;
      switch (f.t) {
        case 'msg': {
          // Gaps are allowed (the client repairs them); a live stream going backwards is not.
          const top = this.liveTop.get(f.conv) ?? 0;
          if (f.seq < top && !this.seen.get(f.conv)?.has(f.seq)) this.violations.push(`${this.device}: live ${f.conv} seq ${f.seq} after ${top}`);
          this.liveTop.set(f.conv, Math.max(top, f.seq));
          this.take(f.conv, f.seq, f.mid);
          break;
        }
        case 'sync.batch':
          for (const m of f.msgs) this.take(f.conv, m.seq, m.mid);
          break;
        case 'synced':
          this.syncing = false;
          if (f.more) this.sync();
          else this.caughtUp = true;
          break;
        case 'sent': {
          const o = this.outbox.get(f.id);
          if (o === undefined) break;
          this.outbox.delete(f.id);
          this.acks.set(o.cmid, { conv: f.conv, seq: f.seq, mid: f.mid });
          this.take(f.conv, f.seq, f.mid);
          break;
        }
        case 'error': {
          if (!f.retry) this.violations.push(`${this.device}: non-retryable ${f.code}`);
          const o = f.id === undefined ? undefined : this.outbox.get(f.id);
          // A refused send is sent again with the same cmid (the idempotency key).
          if (o !== undefined && this.online) s.send({ t: 'send', id: f.id!, to: o.to, cmid: o.cmid, body: bytes(o.cmid) });
          break;
        }
        default:
          break;
      }
    }
    if (dack && this.online) for (const [conv, seq] of this.have) if (seq > 0) s.send({ t: 'dack', conv, seq });
  }

  private take(conv: string, seq: number, mid: string): void {
    let seen = this.seen.get(conv);
    if (seen === undefined) this.seen.set(conv, (seen = new Map()));
    const known = seen.get(seq);
    if (known !== undefined && known !== mid) this.violations.push(`${this.device}: ${conv} seq ${seq} is ${known} and ${mid}`);
    seen.set(seq, mid);
    let have = this.have.get(conv) ?? 0;
    while (seen.has(have + 1)) have++;
    this.have.set(conv, have);
  }
}

t.test('random traffic with faults: nothing acked is lost, duplicated or reordered', async (t) => {
  const w = await new World(3).open();
  t.teardown(() => w.close());
  const random = rng(Number(process.env.TICKS_TEST_SEED ?? 20240611));
  const users = ['alice', 'bob', 'carol'];
  const clients = [new Client('alice', 'phone'), new Client('alice', 'laptop'), new Client('bob', 'phone'), new Client('carol', 'phone'), new Client('carol', 'tablet')];
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  let id = 1;
  for (const c of clients) c.connect(w, Math.floor(random() * 3));
  await settle();

  for (let step = 0; step < 300; step++) {
    const c = pick(clients);
    const r = random();
    if (!c.online) {
      if (r < 0.3) c.connect(w, Math.floor(random() * 3));
    } else if (r < 0.55) {
      const to = pick(users.filter((u) => u !== c.user));
      const cmid = `${c.device}-${c.user}-${id}`;
      c.outbox.set(id, { to, cmid });
      c.session!.send({ t: 'send', id: id++, to, cmid, body: bytes(cmid) });
      if (random() < 0.1) c.session!.send({ t: 'send', id: id++, to, cmid, body: bytes(cmid) }); // a retry
    } else if (r < 0.6) {
      c.session!.disconnect();
    } else if (r < 0.65) {
      await w.advance(Math.floor(random() * 3000));
    } else if (r < 0.67) {
      // Split brain: another activation fences the conversation; the actor must re-activate.
      const conv = directConversationId(c.user, pick(users.filter((u) => u !== c.user)));
      if (await w.store.getConversation(conv)) await w.raw.openWriter(conv, await w.epochs.next(conv));
    }
    if (step % 7 === 0) await settle(1);
    for (const x of clients) x.pump(random() < 0.8);
  }

  // Quiesce: everyone back online, outboxes flushed, synced until caught up.
  for (let round = 0; round < 20; round++) {
    for (const c of clients) if (!c.online) c.connect(w, 0);
    await settle(2);
    for (const c of clients) c.pump(true);
    if (clients.every((c) => c.online && c.outbox.size === 0 && c.caughtUp)) break;
    for (const c of clients) if (c.online && !c.syncing && !c.caughtUp) c.sync();
  }
  for (const c of clients) c.sync();
  await settle(2);
  for (const c of clients) c.pump(true);

  t.ok(clients.every((c) => c.outbox.size === 0), 'every send was eventually acked');
  const convs = new Set<string>();
  for (const a of users) for (const b of users) if (a < b) convs.add(directConversationId(a, b));
  const stored = new Map<string, Map<number, string>>();
  for (const conv of convs) {
    const page = await w.store.readForward(conv, 0, 1000);
    t.same(page.messages.map((m) => m.seq), page.messages.map((_, i) => i + 1), `${conv}: dense seqs`);
    const keys = page.messages.map((m) => `${m.senderDevice}/${m.senderUser}/${m.clientMsgId}`);
    t.equal(new Set(keys).size, keys.length, `${conv}: no send stored twice`);
    stored.set(conv, new Map(page.messages.map((m) => [m.seq, m.messageId])));
  }
  let acked = 0;
  for (const c of clients) {
    for (const [cmid, a] of c.acks) {
      acked++;
      if (stored.get(a.conv)?.get(a.seq) !== a.mid) t.fail(`${cmid} acked as ${a.conv}#${a.seq} ${a.mid} but not stored so`);
    }
    for (const conv of convs) {
      if (!conv.split(':').includes(c.user)) continue;
      const want = stored.get(conv)!;
      t.equal(c.have.get(conv) ?? 0, want.size, `${c.user}/${c.device} holds all of ${conv}`);
      for (const [seq, mid] of c.seen.get(conv) ?? []) if (want.get(seq) !== mid) t.fail(`${c.device} ${conv}#${seq} differs from the store`);
    }
    t.same(c.violations, [], `${c.user}/${c.device}: no violations`);
  }
  t.ok(acked > 50, `a meaningful run (${acked} acked sends)`);
  const outcomes = (await convMetrics.sent.get()).values.map((v) => `${String(v.labels.result)}=${v.value}`);
  t.comment(`send outcomes: ${outcomes.join(' ')}`);
});
