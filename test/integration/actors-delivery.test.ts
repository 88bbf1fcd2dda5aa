import t, { type Test } from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { bytes, settle, text, until, World, type Device } from './actors-harness.js';

const CONV = 'd:alice:bob';

async function setup(t: Test) {
  const w = await new World(2).open();
  t.teardown(() => w.close());
  // alice's user actor lives on shard 1, bob's and the conversation on shard 0: the devices sit on
  // the other shards, so sends, deliveries and receipts cross the link.
  const alicePhone = w.device('alice', 'phone', 0).connect();
  const aliceLaptop = w.device('alice', 'laptop', 1).connect();
  const bobPhone = w.device('bob', 'phone', 1).connect();
  await settle();
  return { w, alicePhone, aliceLaptop, bobPhone };
}

let nextId = 1;
function send(d: Device, to: string, cmid: string, body = cmid): number {
  const id = nextId++;
  d.send({ t: 'send', id, to, cmid, body: bytes(body) });
  return id;
}

t.test('alice (2 devices) and bob exchange messages: one order everywhere, own sends on other devices', async (t) => {
  const { alicePhone, aliceLaptop, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'a1');
  await until(() => alicePhone.of('sent').length === 1, 'first sent');
  send(alicePhone, 'bob', 'a2');
  send(bobPhone, 'alice', 'b1');
  send(alicePhone, 'bob', 'a3');
  send(bobPhone, 'alice', 'b2');
  await until(() => alicePhone.of('sent').length === 3 && bobPhone.of('sent').length === 2, 'all sent');
  await until(() => aliceLaptop.msgs().length === 5 && alicePhone.msgs().length === 2 && bobPhone.msgs().length === 3, 'all delivered');

  const sent = [...alicePhone.of('sent'), ...bobPhone.of('sent')].sort((a, b) => a.seq - b.seq);
  t.same(sent.map((s) => s.seq), [1, 2, 3, 4, 5], 'dense seqs');
  t.ok(sent.every((s) => s.conv === CONV && !s.dup));
  const bySeq = new Map(sent.map((s) => [s.seq, s.mid]));
  for (const d of [alicePhone, aliceLaptop, bobPhone]) {
    const seqs = d.msgs().map((m) => m.seq);
    t.same(seqs, [...seqs].sort((a, b) => a - b), `${d.ref.user}/${d.ref.device} sees ascending seqs`);
    for (const m of d.msgs()) t.equal(m.mid, bySeq.get(m.seq), 'same mid for the same seq on every device');
  }
  t.same(aliceLaptop.msgs().map((m) => text(m.body)).sort(), ['a1', 'a2', 'a3', 'b1', 'b2'], 'the laptop got every body');
  t.same(
    alicePhone.msgs().map((m) => m.from),
    ['bob', 'bob'],
    'the sending device never gets its own message as msg',
  );
  const own = aliceLaptop.msgs().filter((m) => m.from === 'alice');
  t.equal(own.length, 3, "alice's laptop gets alice's sends");
  t.ok(own.every((m) => m.cmid !== undefined && m.fdev === 'phone'), 'with cmid, so the outbox can settle');
  t.ok(bobPhone.msgs().every((m) => m.cmid === undefined && m.kind === 'direct'), 'no cmid for other users');
  t.same(aliceLaptop.msgs().map((m) => m.seq), [1, 2, 3, 4, 5], 'the laptop saw every message, in order');
});

t.test('sent only after the commit resolved; sends during a commit are group-committed', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'warmup');
  await until(() => alicePhone.of('sent').length === 1, 'warm-up sent');
  w.control.appends.length = 0;
  w.control.hold();
  send(alicePhone, 'bob', 'm1');
  await settle();
  send(alicePhone, 'bob', 'm2');
  send(alicePhone, 'bob', 'm3');
  send(alicePhone, 'bob', 'm4');
  await settle();
  t.equal(alicePhone.of('sent').length, 1, 'no ack while the commit is held');
  t.equal(bobPhone.msgs().length, 1, 'no delivery before the commit either');
  t.same(w.control.appends, [1], 'the later sends wait for the commit in flight');
  w.control.release();
  await until(() => alicePhone.of('sent').length === 5, 'acks after the commit');
  t.same(w.control.appends, [1, 3], 'the three queued sends went in one group commit');
  t.same(alicePhone.of('sent').map((s) => s.seq), [1, 2, 3, 4, 5]);
  await until(() => bobPhone.msgs().length === 5, 'delivered');
});

t.test('delivered and read receipts reach the sender devices', async (t) => {
  const { alicePhone, aliceLaptop, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'hi');
  await until(() => bobPhone.msgs().length === 1, 'bob got it');
  bobPhone.send({ t: 'dack', conv: CONV, seq: 1 });
  await until(() => alicePhone.of('receipt').length === 1 && aliceLaptop.of('receipt').length === 1, 'delivered receipts');
  t.same(alicePhone.of('receipt')[0], { t: 'receipt', conv: CONV, kind: 'delivered', user: 'bob', seq: 1, device: 'phone' });
  bobPhone.send({ t: 'read', conv: CONV, seq: 1 });
  await until(() => alicePhone.of('receipt').length === 2 && aliceLaptop.of('receipt').length === 2, 'read receipts');
  t.same(alicePhone.of('receipt')[1], { t: 'receipt', conv: CONV, kind: 'read', user: 'bob', seq: 1 });
  t.equal(bobPhone.of('receipt').length, 0, 'the reader gets no receipt of its own read');

  aliceLaptop.send({ t: 'read', conv: CONV, seq: 1 });
  await until(() => alicePhone.of('receipt').length === 3 && bobPhone.of('receipt').length === 1, "alice's read");
  t.same(alicePhone.of('receipt')[2], { t: 'receipt', conv: CONV, kind: 'read', user: 'alice', seq: 1 }, "alice's other device hears of her read");
  t.equal(aliceLaptop.of('receipt').length, 2, 'not the device that read');
  bobPhone.send({ t: 'dack', conv: CONV, seq: 1 });
  await settle();
  t.equal(alicePhone.of('receipt').length, 3, 'a repeated dack adds no receipt');
  bobPhone.send({ t: 'dack', conv: CONV, seq: 9 });
  await until(() => bobPhone.of('error').length === 1, 'dack past the head');
  t.equal(bobPhone.of('error')[0]!.code, 'invalid_field');
});

t.test('unacknowledged deliveries are retried with backoff until dacked', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'hi');
  await until(() => bobPhone.msgs().length === 1, 'first push');
  await w.advance(999);
  t.equal(bobPhone.msgs().length, 1, 'not before deliveryRetryMs');
  await w.advance(1);
  await until(() => bobPhone.msgs().length === 2, 'first retry after 1000 ms');
  await w.advance(1999);
  t.equal(bobPhone.msgs().length, 2, 'backoff doubled');
  await w.advance(1);
  await until(() => bobPhone.msgs().length === 3, 'second retry after 2000 ms more');
  t.equal(bobPhone.msgs()[2]!.mid, bobPhone.msgs()[0]!.mid, 'the same message again');
  bobPhone.send({ t: 'dack', conv: CONV, seq: 1 });
  await settle();
  await w.advance(60_000);
  t.equal(bobPhone.msgs().length, 3, 'no retries after the dack');
  t.equal(bobPhone.closed, null);
});

t.test('a device that never acks is disconnected with 4001 after deliveryMaxRetries', async (t) => {
  const { w, alicePhone, aliceLaptop, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'hi');
  await until(() => bobPhone.msgs().length === 1 && aliceLaptop.msgs().length === 1, 'pushed');
  aliceLaptop.send({ t: 'dack', conv: CONV, seq: 1 });
  await settle();
  for (const ms of [1000, 2000, 4000]) await w.advance(ms);
  await until(() => bobPhone.msgs().length === 4, 'three retries');
  t.equal(bobPhone.closed, null);
  await w.advance(8000);
  await until(() => bobPhone.closed !== null, 'closed');
  t.equal(bobPhone.closed!.code, CLOSE.slowConsumer);
  t.equal(aliceLaptop.closed, null, 'the device that acked stays');
  t.equal(aliceLaptop.msgs().length, 1);
});

t.test('a retried send (same cmid) is acked again and never duplicated', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  send(alicePhone, 'bob', 'same');
  await until(() => alicePhone.of('sent').length === 1, 'first');
  send(alicePhone, 'bob', 'same');
  await until(() => alicePhone.of('sent').length === 2, 'retry answered');
  const [a, b] = alicePhone.of('sent');
  t.equal(b!.seq, a!.seq);
  t.equal(b!.mid, a!.mid);
  t.equal(b!.dup, true);
  t.equal(b!.ts, a!.ts, 'the original timestamp');
  // After passivation the in-memory dedupe is gone: the store's idempotency answers.
  await w.advance(60_000);
  t.equal(w.shards[0]!.stats().actors.conv, 0, 'conversation actor passivated');
  send(alicePhone, 'bob', 'same');
  await until(() => alicePhone.of('sent').length === 3, 'retry after passivation answered');
  t.equal(alicePhone.of('sent')[2]!.seq, a!.seq);
  t.equal(alicePhone.of('sent')[2]!.dup, true);
  t.equal(await w.store.head(CONV), 1, 'one message stored');
  await settle();
  t.same(new Set(bobPhone.msgs().map((m) => m.mid)).size, 1, 'bob holds one message (redeliveries share the mid)');
});

t.test('a second session of the same device closes the first with 4502', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  const bobAgain = w.reconnect(bobPhone, 0).connect();
  await until(() => bobPhone.closed !== null, 'old session closed');
  t.equal(bobPhone.closed!.code, CLOSE.replaced);
  t.equal(bobAgain.closed, null);
  send(alicePhone, 'bob', 'to the new session');
  await until(() => bobAgain.msgs().length === 1, 'delivered to the new session');
  t.equal(bobPhone.msgs().length, 0);
  // The replaced session's own `closed` must not detach the new one.
  await settle();
  send(alicePhone, 'bob', 'again');
  await until(() => bobAgain.msgs().length === 2, 'still attached');
});

t.test('a send from a non-member gets not_member; a send to a missing group gets not_found', async (t) => {
  const { w, alicePhone } = await setup(t);
  send(alicePhone, 'bob', 'hi');
  await until(() => alicePhone.of('sent').length === 1, 'created');
  const carol = w.device('carol', 'phone', 1).connect();
  carol.send({ t: 'send', id: 77, conv: CONV, cmid: 'x', body: bytes('x') });
  carol.send({ t: 'send', id: 78, conv: 'g:nope', cmid: 'y', body: bytes('y') });
  await until(() => carol.of('error').length === 2, 'errors');
  const errs = carol.of('error').sort((a, b) => a.id! - b.id!);
  t.match(errs[0], { id: 77, code: 'not_member', retry: false });
  t.match(errs[1], { id: 78, code: 'not_found', retry: false });
});

t.test('ping is answered with pong', async (t) => {
  const { alicePhone } = await setup(t);
  alicePhone.send({ t: 'ping', id: 5 });
  t.same(alicePhone.of('pong'), [{ t: 'pong', id: 5 }]);
});
