import t, { type Test } from 'tap';
import { newMessageId } from '../../src/protocol/ids.js';
import { StoreError } from '../../src/store/errors.js';
import { bytes, settle, text, until, World, type Device } from './actors-harness.js';

const CONV = 'd:alice:bob';

async function setup(t: Test) {
  const w = await new World(2).open();
  t.teardown(() => w.close());
  const alicePhone = w.device('alice', 'phone', 0).connect();
  const bobPhone = w.device('bob', 'phone', 1).connect();
  await settle();
  return { w, alicePhone, bobPhone };
}

let nextId = 1;
function send(d: Device, cmid: string, to = d.ref.user === 'alice' ? 'bob' : 'alice'): number {
  const id = nextId++;
  d.send({ t: 'send', id, to, cmid, body: bytes(cmid) });
  return id;
}

async function sendAll(d: Device, cmids: string[]): Promise<void> {
  const before = d.of('sent').length;
  for (const c of cmids) send(d, c);
  await until(() => d.of('sent').length === before + cmids.length, `sent ${cmids.join(',')}`);
}

async function stored(w: World): Promise<string[]> {
  const page = await w.store.readForward(CONV, 0, 100);
  return page.messages.map((m) => `${m.seq}:${m.clientMsgId}`);
}

t.test('an offline device syncs exactly the messages it missed, then gets synced', async (t) => {
  const { w, alicePhone } = await setup(t);
  const bobLaptop = w.device('bob', 'laptop', 0).connect();
  await sendAll(alicePhone, ['m1', 'm2']);
  await until(() => bobLaptop.msgs().length === 2, 'laptop online for the first two');
  bobLaptop.send({ t: 'dack', conv: CONV, seq: 2 });
  await settle();
  await w.advance(50); // cursor flush
  bobLaptop.disconnect();
  await sendAll(alicePhone, ['m3', 'm4', 'm5']);
  t.same(await w.store.getDelivered('bob', 'laptop'), [{ conversationId: CONV, seq: 2 }], 'the dack was stored');

  const back = w.reconnect(bobLaptop, 1).connect();
  back.send({ t: 'sync', id: 100 }); // before the attach is confirmed: it waits for it
  await until(() => back.of('synced').length === 1, 'synced');
  const batches = back.of('sync.batch');
  t.same(batches.map((b) => b.msgs.map((m) => text(m.body))), [['m3', 'm4'], ['m5']], 'pages of syncPageSize, exactly the missed ones');
  t.ok(batches.every((b) => b.id === 100 && b.head === 5 && b.kind === 'direct' && b.expired === undefined));
  const synced = back.of('synced')[0]!;
  t.match(synced, { id: 100, heads: { [CONV]: 5 }, reads: {}, more: false });
  t.equal(back.frames.at(-1)!.t, 'synced', 'synced comes last');

  back.send({ t: 'sync', id: 101, limit: 1, cursors: { [CONV]: 3 } });
  await until(() => back.of('synced').length === 2, 'second round');
  t.same(back.of('sync.batch').slice(2).map((b) => b.msgs.map((m) => m.seq)), [[4]], 'explicit cursor and limit');
  t.equal(back.of('synced')[1]!.more, true, 'more: the limit cut the round short');
});

t.test('a sender that was offline learns delivered and read state from sync', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await w.store.putDevice({ userId: 'alice', deviceId: 'phone', platform: 'ios', createdAtMs: 1 });
  await sendAll(bobPhone, ['b1']);
  bobPhone.disconnect();
  await until(() => alicePhone.msgs().length === 1, 'delivered to alice');
  alicePhone.send({ t: 'dack', conv: CONV, seq: 1 });
  alicePhone.send({ t: 'read', conv: CONV, seq: 1 });
  await settle();
  await w.advance(50);
  const back = w.reconnect(bobPhone).connect();
  back.send({ t: 'sync', id: 1 });
  await until(() => back.of('synced').length === 1, 'synced');
  t.same(back.of('synced')[0]!.peers, { [CONV]: { user: 'alice', delivered: 1, read: 1 } });
});

t.test('sync says explicitly when retention removed part of the range', async (t) => {
  const { w, alicePhone } = await setup(t);
  await sendAll(alicePhone, ['1', '2', '3', '4', '5', '6', '7', '8', '9']);
  const retainedFrom = await w.store.trimExpired(CONV, w.clock.now() + 1);
  t.ok(retainedFrom > 1 && retainedFrom <= 9, `everything before the head bucket is gone (retained from ${retainedFrom})`);
  const fresh = w.device('bob', 'tablet', 0).connect();
  fresh.send({ t: 'sync', id: 1 });
  await until(() => fresh.of('synced').length === 1, 'synced');
  const batches = fresh.of('sync.batch');
  t.match(batches[0], { expired: true, retainedFrom, msgs: [{ seq: retainedFrom }] }, 'the first batch says where history starts');
  t.same(batches.flatMap((b) => b.msgs.map((m) => m.seq)), Array.from({ length: 10 - retainedFrom }, (_, i) => retainedFrom + i));
  t.ok(batches.slice(1).every((b) => b.expired === undefined), 'only the first batch carries expired');
});

t.test('history pages backwards for members only', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await sendAll(alicePhone, ['1', '2', '3']);
  bobPhone.send({ t: 'history', id: 9, conv: CONV, limit: 2 });
  await until(() => bobPhone.of('history.page').length === 1, 'page');
  const page = bobPhone.of('history.page')[0]!;
  t.same(page.msgs.map((m) => m.seq), [3, 2]);
  t.equal(page.next, 2);
  t.equal(page.expired, false);
  const carol = w.device('carol', 'phone', 0).connect();
  carol.send({ t: 'history', id: 10, conv: CONV, limit: 2 });
  await until(() => carol.of('error').length === 1, 'refused');
  t.match(carol.of('error')[0], { id: 10, code: 'not_member' });
});

t.test('passivation after idle and re-activation keep seqs dense', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await sendAll(alicePhone, ['1', '2']);
  t.equal(w.shards[0]!.stats().actors.conv, 1);
  await w.advance(60_000);
  t.equal(w.shards[0]!.stats().actors.conv, 0, 'the conversation actor was passivated');
  t.equal(w.shards[1]!.stats().actors.user, 1, 'user actors with live sessions stay');
  await sendAll(bobPhone, ['3']);
  await sendAll(alicePhone, ['4']);
  t.same(await stored(w), ['1:1', '2:2', '3:3', '4:4']);
  t.same([...alicePhone.of('sent'), ...bobPhone.of('sent')].map((s) => s.seq).sort(), [1, 2, 3, 4]);
  bobPhone.disconnect();
  alicePhone.disconnect();
  await settle();
  await w.advance(60_000);
  const stats = w.shards.map((s) => s.stats().actors);
  t.same(stats, [{ conv: 0, user: 0 }, { conv: 0, user: 0 }], 'user actors without sessions passivate too');
});

t.test('a stale epoch fails the batch and the queue retryably; the next activation goes on without loss', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await sendAll(alicePhone, ['a1']);
  w.control.hold();
  const id2 = send(alicePhone, 'a2');
  await settle();
  const id3 = send(alicePhone, 'a3');
  await settle();
  // Another activation (split brain) claims the conversation with a newer epoch and writes.
  const intruder = await w.raw.openWriter(CONV, await w.epochs.next(CONV));
  await intruder.append([{ messageId: newMessageId(), senderUser: 'bob', senderDevice: 'tablet', clientMsgId: 'x', body: bytes('x'), sentAtMs: 1 }]);
  w.control.release();
  await until(() => alicePhone.of('error').length === 2, 'both failed');
  t.same(
    alicePhone.of('error').map((e) => [e.id, e.code, e.retry]),
    [
      [id2, 'store_unavailable', true],
      [id3, 'store_unavailable', true],
    ],
  );
  t.equal(alicePhone.of('sent').length, 1, 'nothing acked by the fenced writer');
  await sendAll(alicePhone, ['a2', 'a3']); // the client retries with the same cmids
  t.same(alicePhone.of('sent').map((s) => s.seq), [1, 3, 4]);
  t.same(await stored(w), ['1:a1', '2:x', '3:a2', '4:a3'], 'dense, nothing lost, nothing twice');
  await until(() => bobPhone.msgs().length === 3, 'bob got the acked ones live');
});

t.test('a partial commit acks the committed prefix; a retryable store error never acks', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await sendAll(alicePhone, ['warm']);
  w.control.hold();
  send(alicePhone, 'p1');
  await settle();
  w.control.failNext = { error: new StoreError('store.timeout', 'bucket 2 timed out'), commitFirst: 1 };
  send(alicePhone, 'p2');
  const id3 = send(alicePhone, 'p3');
  await settle();
  w.control.release();
  await until(() => alicePhone.of('sent').length === 3 && alicePhone.of('error').length === 1, 'answers');
  t.same(alicePhone.of('sent').map((s) => s.seq), [1, 2, 3], 'p1 and the committed p2 are acked');
  t.match(alicePhone.of('error')[0], { id: id3, code: 'store_unavailable', retry: true });
  await until(() => bobPhone.msgs().length === 3, 'committed ones delivered');

  w.control.failNext = { error: new StoreError('store.unavailable', 'down'), commitFirst: 0 };
  const id4 = send(alicePhone, 'p4');
  await until(() => alicePhone.of('error').length === 2, 'refused');
  t.match(alicePhone.of('error')[1], { id: id4, code: 'store_unavailable', retry: true });
  t.equal(alicePhone.of('sent').length, 3, 'no ack');
  await sendAll(alicePhone, ['p3', 'p4']);
  t.same(await stored(w), ['1:warm', '2:p1', '3:p2', '4:p3', '5:p4']);
});

t.test('drain refuses new sends, finishes the commit in flight and flushes cursors', async (t) => {
  const { w, alicePhone, bobPhone } = await setup(t);
  await sendAll(alicePhone, ['m1']);
  await until(() => bobPhone.msgs().length === 1, 'delivered');
  bobPhone.send({ t: 'dack', conv: CONV, seq: 1 });
  await settle();
  w.control.hold();
  send(alicePhone, 'm2');
  await settle();
  let drained = false;
  const shard0 = w.shards[0]!;
  const d = shard0.drain().then(() => (drained = true));
  const late = send(alicePhone, 'm3');
  t.match(alicePhone.of('error'), [{ id: late, code: 'shutting_down', retry: true }]);
  await settle();
  t.equal(drained, false, 'waits for the commit in flight');
  w.control.release();
  await d;
  t.same(alicePhone.of('sent').map((s) => s.seq), [1, 2], 'the accepted send was acked');
  t.same(await w.store.getDelivered('bob', 'phone'), [{ conversationId: CONV, seq: 1 }], 'cursors flushed without waiting for the tick');
  t.equal(shard0.stats().actors.conv + shard0.stats().actors.user, 0, 'every actor ended');
});

t.test('a direct conversation left without a member by a cut-off creation is repaired on activation', async (t) => {
  const w = await new World(2).open();
  t.teardown(() => w.close());
  // What a node killed between the conversation row and its member rows leaves behind.
  await w.store.createConversation({ id: CONV, kind: 'direct', createdBy: 'alice', createdAtMs: 1_000, members: [{ userId: 'alice', role: 'member' }] });
  t.same((await w.store.listMembers(CONV)).map((m) => m.userId), ['alice'], 'bob is missing before');
  const bobPhone = w.device('bob', 'phone', 1).connect();
  const alicePhone = w.device('alice', 'phone', 0).connect();
  await settle();
  await sendAll(bobPhone, ['from-bob']);
  t.match(bobPhone.of('sent')[0], { conv: CONV, seq: 1 }, 'bob can send: he is a member again');
  t.equal(bobPhone.of('error').length, 0, 'no not_member');
  await until(() => alicePhone.msgs().length === 1, 'alice receives it');
  t.same((await w.store.listMembers(CONV)).map((m) => m.userId).sort(), ['alice', 'bob'], 'the member row was written');
});
