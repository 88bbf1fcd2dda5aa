import t from 'tap';
import type { SessionRef } from '../../src/actors/session.js';
import { ConnectionTable, isAnswer, shortReason, type ConnState, type SocketLike } from '../../src/gateway/connections.js';
import { FrameRateLimiter, WindowCounter } from '../../src/gateway/limits.js';
import { decodeServerFrame } from '../../src/protocol/codec.js';
import { CLOSE, CLOSE_REASONS } from '../../src/protocol/codes.js';

t.test('token bucket: burst, refill, rate_limited, then abuse past framesPerSecond rejections in a second', async (t) => {
  const l = new FrameRateLimiter(10, 20, 0);
  for (let i = 0; i < 20; i++) t.equal(l.take(0), 'ok', 'burst of 2x');
  t.equal(l.take(0), 'limited');
  t.equal(l.take(100), 'ok', 'one token after 100 ms at 10/s');
  t.equal(l.take(100), 'limited');
  let verdict = 'limited';
  let rejected = 2;
  while (verdict === 'limited') {
    verdict = l.take(150);
    rejected++;
  }
  t.equal(verdict, 'abuse');
  t.equal(rejected, 11, 'the 11th rejection within one second is abuse (more than framesPerSecond)');
  const calm = new FrameRateLimiter(10, 20, 0);
  for (let s = 0; s < 5; s++) for (let i = 0; i < 10; i++) t.equal(calm.take(s * 1000 + i * 100), 'ok');
});

t.test('a client sending at 1.5x the rate is limited but never closed', async (t) => {
  const l = new FrameRateLimiter(2, 4, 0);
  const verdicts: string[] = [];
  for (let ms = 0; ms < 20_000; ms += 333) verdicts.push(l.take(ms));
  t.ok(verdicts.includes('limited'));
  t.notOk(verdicts.includes('abuse'));
});

t.test('window counter trips past its limit within the window only', async (t) => {
  const w = new WindowCounter(3, 1000, 0);
  t.same([w.hit(0), w.hit(1), w.hit(2), w.hit(3)], [false, false, false, true]);
  t.equal(w.hit(1000), false, 'new window');
});

class FakeSocket implements SocketLike {
  sent: Uint8Array[] = [];
  ended: [number, string][] = [];
  buffered = 0;
  nextResult = 1;
  constructor(private readonly state: ConnState) {}
  send(m: Uint8Array): number {
    this.sent.push(m);
    return this.nextResult;
  }
  end(code: number, reason: string): void {
    this.ended.push([code, reason]);
  }
  getBufferedAmount(): number {
    return this.buffered;
  }
  getUserData(): ConnState {
    return this.state;
  }
  /** Sends made inside each cork, one entry per cork call. */
  corks: number[] = [];
  cork(cb: () => void): void {
    const before = this.sent.length;
    cb();
    this.corks.push(this.sent.length - before);
  }
}

const ref: SessionRef = { node: 'n', shard: 0, connId: 5, user: 'alice', device: 'phone' };
const pong = { t: 'pong', id: 1 } as const;
const state = (): ConnState => ({ session: { ...ref }, refusal: null, token: null, early: null, startedMs: 0, expiresAtMs: 0, ending: false, rateTatMs: 0, rateRejected: 0, rateWindowMs: 0, protoErrors: 0, protoWindowMs: 0, lastSeenMs: 0, pinged: false, inflight: 0, out: null });

t.test('push reports sent, buffered, and closes a slow consumer with 4001 on overflow', async (t) => {
  const table = new ConnectionTable(1000);
  const ws = new FakeSocket(state());
  table.add(5, ws);
  t.equal(table.push(ref, pong), 'sent');
  t.same(decodeServerFrame(ws.sent[0]!), { ok: true, frame: pong });
  ws.nextResult = 0;
  ws.buffered = 500;
  t.equal(table.push(ref, pong), 'buffered');
  ws.buffered = 1500;
  t.equal(table.push(ref, pong), 'overflow', 'buffered past maxBackpressureBytes');
  t.same(ws.ended, [[CLOSE.slowConsumer, 'slow consumer']]);
  t.equal(table.push(ref, pong), 'closed', 'nothing more after the close decision');

  const ws2 = new FakeSocket(state());
  table.add(6, ws2);
  const ref2 = { ...ref, connId: 6 };
  ws2.nextResult = 2;
  t.equal(table.push(ref2, pong), 'overflow', 'uWS dropped the frame');
  t.same(ws2.ended, [[CLOSE.slowConsumer, 'slow consumer']]);
});

t.test('a batch writes each socket its frames in push order, in one cork, when it ends', async (t) => {
  const table = new ConnectionTable(1000);
  const a = new FakeSocket(state());
  const b = new FakeSocket({ ...state(), session: { ...ref, connId: 6 } });
  table.add(5, a);
  table.add(6, b);
  const refB = { ...ref, connId: 6 };
  const msg = (seq: number) => ({ t: 'msg', conv: 'g:1', kind: 'group', seq, mid: `m${seq}`, from: 'bob', fdev: 'd', body: new Uint8Array([seq]), ts: 1 }) as const;
  const shared = msg(1);
  table.batch(() => {
    t.equal(table.push(ref, shared), 'sent');
    t.equal(table.push(refB, shared), 'sent');
    t.equal(table.push(ref, msg(2)), 'sent');
    t.equal(table.push(ref, pong), 'sent');
    t.equal(a.sent.length + b.sent.length, 0, 'nothing written before the batch ends');
  });
  t.same(a.corks, [3], 'one cork for the three frames of socket a');
  t.same(b.corks, [1]);
  t.same(a.sent.map((x) => decodeServerFrame(x)), [shared, msg(2), pong].map((frame) => ({ ok: true, frame })), 'push order');
  t.equal(a.sent[0], b.sent[0], 'a msg frame object is encoded once for every socket it goes to');
  t.equal(table.push(ref, pong), 'sent', 'outside a batch a push is written at once');
  t.same(a.corks, [3]);
  t.equal(a.sent.length, 4);
});

t.test('in a batch: overflow is decided at push time, and a close writes what was queued first', async (t) => {
  const table = new ConnectionTable(1000);
  const slow = new FakeSocket(state());
  slow.buffered = 900;
  const closing = new FakeSocket({ ...state(), session: { ...ref, connId: 6 } });
  table.add(5, slow);
  table.add(6, closing);
  const refC = { ...ref, connId: 6 };
  const big = { t: 'msg', conv: 'g:1', kind: 'group', seq: 1, mid: 'm1', from: 'bob', fdev: 'd', body: new Uint8Array(200), ts: 1 } as const;
  table.batch(() => {
    t.equal(table.push(ref, big), 'overflow', 'buffered 900 + queued frame > 1000');
    t.equal(table.push(ref, pong), 'closed');
    t.equal(table.push(refC, pong), 'sent');
    table.close(refC, CLOSE.replaced, 'replaced by a newer connection');
    t.equal(closing.sent.length, 1, 'the queued frame went out before the close');
  });
  t.same(slow.ended, [[CLOSE.slowConsumer, 'slow consumer']]);
  t.same(slow.sent, [], 'nothing queued for a slow consumer is written');
  t.same(closing.ended, [[CLOSE.replaced, 'replaced by a newer connection']]);
  t.equal(closing.sent.length, 1, 'written once');

  const late = new FakeSocket({ ...state(), session: { ...ref, connId: 7 } });
  table.add(7, late);
  table.batch(() => {
    t.equal(table.push({ ...ref, connId: 7 }, pong), 'sent');
    late.buffered = 5000;
  });
  t.equal(late.sent.length, 1);
  t.same(late.ended, [[CLOSE.slowConsumer, 'slow consumer']], 'the write left the buffer over the limit: 4001');
});

t.test('push and close ignore unknown or mismatched connections', async (t) => {
  const table = new ConnectionTable(1000);
  const ws = new FakeSocket(state());
  table.add(5, ws);
  t.equal(table.push({ ...ref, connId: 9 }, pong), 'closed');
  t.equal(table.push({ ...ref, device: 'tablet' }, pong), 'closed', 'a reused id of another device is not this session');
  table.close({ ...ref, user: 'bob' }, 4502, 'x');
  t.same(ws.ended, []);
  table.close(ref, CLOSE.replaced, 'replaced by a newer connection');
  table.close(ref, CLOSE.replaced, 'again');
  t.same(ws.ended, [[4502, 'replaced by a newer connection']], 'close is idempotent');
  t.ok(table.remove(5));
  t.notOk(table.remove(5));
});

t.test('the expiry sweep closes sessions whose token expired with 4501 after an error frame', async (t) => {
  const table = new ConnectionTable(1000);
  const live = new FakeSocket({ ...state(), expiresAtMs: 10_000 });
  const stale = new FakeSocket({ ...state(), expiresAtMs: 5_000 });
  table.add(1, live);
  table.add(2, stale);
  t.equal(table.expire(6_000), 1);
  t.same(live.ended, []);
  t.same(stale.ended, [[CLOSE.tokenExpired, 'token expired']]);
  t.match(decodeServerFrame(stale.sent[0]!), { ok: true, frame: { t: 'error', code: 'unauthorized', msg: 'token expired' } });
  t.equal(table.expire(6_000), 0, 'once');
});

t.test('the idle sweep pings a session silent for half the timeout and closes it with 4002 at the timeout', async (t) => {
  const table = new ConnectionTable(1000);
  const ws = new FakeSocket({ ...state(), lastSeenMs: 1_000 });
  let pings = 0;
  (ws as unknown as { ping: () => number }).ping = () => ++pings;
  table.add(1, ws);
  t.equal(table.idle(4_000, 8_000), 0);
  t.equal(pings, 0, 'not yet half the timeout');
  t.equal(table.idle(5_000, 8_000), 0);
  t.equal(pings, 1, 'pinged at half the timeout');
  table.idle(6_000, 8_000);
  t.equal(pings, 1, 'pinged once until something arrives');
  t.equal(table.idle(9_000, 8_000), 1);
  t.same(ws.ended, [[CLOSE.idleTimeout, 'idle timeout']]);
});

t.test('the sweep closes a socket over the backpressure limit with 4001 (uWS topic publishes skip it silently)', async (t) => {
  const table = new ConnectionTable(1000);
  const slow = new FakeSocket({ ...state(), lastSeenMs: 1_000 });
  const fine = new FakeSocket({ ...state(), lastSeenMs: 1_000 });
  slow.buffered = 1500;
  fine.buffered = 900;
  table.add(1, slow);
  table.add(2, fine);
  t.equal(table.idle(1_500, 8_000), 1);
  t.same(slow.ended, [[CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]]]);
  t.same(fine.ended, [], 'a socket under the limit stays');
});

t.test('answers pushed to a session count its in-flight requests back down', async (t) => {
  const table = new ConnectionTable(1000);
  const st = { ...state(), inflight: 2 };
  const ws = new FakeSocket(st);
  table.add(ref.connId, ws);
  table.push(ref, { t: 'receipt', conv: 'c', kind: 'read', user: 'bob', seq: 1 } as never);
  t.equal(st.inflight, 2, 'a receipt answers nothing');
  table.push(ref, { t: 'pong', id: 1 });
  t.equal(st.inflight, 1, 'a pong answers a ping');
  table.push(ref, { t: 'error', id: 2, code: 'internal', msg: 'x', retry: true });
  t.equal(st.inflight, 0, 'an error with an id answers its request');
  table.push(ref, { t: 'pong', id: 3 });
  t.equal(st.inflight, 0, 'never below zero');
  t.notOk(isAnswer({ t: 'error', code: 'internal', msg: 'x', retry: true }), 'an error without an id answers nothing');
});

t.test('group operation answers count back too (64 operations once locked a connection out)', async (t) => {
  const table = new ConnectionTable(1000);
  const st = { ...state(), inflight: 3 };
  table.add(ref.connId, new FakeSocket(st));
  table.push(ref, { t: 'conv.ok', id: 1, conv: 'g:x', seq: 4 });
  table.push(ref, { t: 'members.page', id: 2, conv: 'g:x', members: [], next: null });
  t.equal(st.inflight, 1, 'conv.ok and members.page answer');
  table.push(ref, { t: 'receipts.state', id: 3, conv: 'g:x', seq: 1, delivered: [], read: [], deliveredAll: 0, readAll: 0 } as never);
  t.equal(st.inflight, 0, 'receipts.state answers');
  t.notOk(isAnswer({ t: 'sync.batch', id: 4 } as never), 'a sync batch does not end its sync (synced does)');
  t.ok(isAnswer({ t: 'synced', id: 4 } as never));
});

t.test('close reasons are cut to 123 bytes on a character boundary', async (t) => {
  t.equal(shortReason('short'), 'short');
  const cut = shortReason('é'.repeat(100));
  t.ok(Buffer.byteLength(cut) <= 123);
  t.equal(cut, 'é'.repeat(61));
});
