import t from 'tap';
import { encodeThreadFrame } from '../../src/actors/thread-frames.js';
import { shardOf } from '../../src/actors/address.js';
import { CLOSE } from '../../src/protocol/codes.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { bytes, settle, until, World } from './actors-harness.js';

const CONV = 'd:alice:bob';
// Placement with 2 shards: user alice -> 1, user bob -> 0, conversation d:alice:bob -> 0.

t.test('a full conversation mailbox answers too_many_inflight, never drops', async (t) => {
  const w = await new World(2, { mailboxCapacity: 16 }).open();
  t.teardown(() => w.close());
  const alice = w.device('alice', 'phone', 0).connect(); // same shard as the conversation
  await settle();
  for (let i = 0; i < 20; i++) alice.send({ t: 'send', id: i, to: 'bob', cmid: `c${i}`, body: bytes('x') });
  await until(() => alice.of('sent').length + alice.of('error').length === 20, 'every send answered');
  t.same(alice.of('error').map((e) => [e.id, e.code, e.retry]), [16, 17, 18, 19].map((id) => [id, 'too_many_inflight', true]));
  t.equal(alice.of('sent').length, 16);
});

t.test('sends waiting for the store are bounded too', async (t) => {
  const w = await new World(2, { mailboxCapacity: 16 }).open();
  t.teardown(() => w.close());
  const alice = w.device('alice', 'phone', 1).connect();
  await settle();
  alice.send({ t: 'send', id: 0, to: 'bob', cmid: 'c0', body: bytes('x') });
  await until(() => alice.of('sent').length === 1, 'created');
  w.control.hold();
  for (let i = 1; i <= 30; i++) {
    alice.send({ t: 'send', id: i, to: 'bob', cmid: `c${i}`, body: bytes('x') });
    await settle(1); // the link delivers them one by one: the mailbox never fills, the queue does
  }
  t.ok(alice.of('error').length > 0, 'refused once the commit queue is full');
  t.ok(alice.of('error').every((e) => e.code === 'too_many_inflight'));
  w.control.release();
  await until(() => alice.of('sent').length + alice.of('error').length === 31, 'every send answered');
});

t.test('a user actor whose mailbox overflows disconnects its devices (4001) so they resync', async (t) => {
  const w = await new World(2, { mailboxCapacity: 16 }).open();
  t.teardown(() => w.close());
  const bob = w.device('bob', 'phone', 1).connect();
  await settle();
  const msg = { t: 'deliver' as const, conv: CONV, kind: 'direct' as const, msgs: [{ seq: 1, mid: 'm', from: 'alice', fdev: 'p', body: bytes('x'), ts: 1, cmid: 'c' }] };
  for (let i = 0; i < 20; i++) w.shards[0]!.onLinkMessage(encodeThreadFrame({ v: 1, t: 'actor', kind: 'user', key: 'bob', msg }));
  await until(() => bob.closed !== null, 'closed');
  t.equal(bob.closed!.code, CLOSE.slowConsumer);
});

t.test('a device with too many unacknowledged deliveries is disconnected to resync', async (t) => {
  const w = await new World(2, {}, { maxPendingPerDevice: 3 }).open();
  t.teardown(() => w.close());
  const alice = w.device('alice', 'phone', 0).connect();
  const bob = w.device('bob', 'phone', 1).connect();
  await settle();
  for (let i = 0; i < 4; i++) {
    alice.send({ t: 'send', id: i, to: 'bob', cmid: `c${i}`, body: bytes('x') });
    await until(() => alice.of('sent').length === i + 1, 'sent');
  }
  await until(() => bob.closed !== null, 'closed');
  t.equal(bob.closed!.code, CLOSE.slowConsumer);
  t.equal(bob.msgs().length, 3, 'it held three unacknowledged');
});

t.test('a session whose attach was lost is closed to reconnect; its sync waits meanwhile', async (t) => {
  const w = await new World(2, {}, { attachTimeoutMs: 5000 }).open();
  t.teardown(() => w.close());
  w.net.cut.add(1); // alice's user actor's shard does not answer
  const alice = w.device('alice', 'phone', 0).connect();
  alice.send({ t: 'sync', id: 1 });
  await settle();
  t.equal(alice.frames.length, 0, 'no sync before the session is registered for live delivery');
  await w.advance(5000);
  t.equal(alice.closed?.code, CLOSE.internalError);
});

t.test('when a shard restarts, sessions of the users it hosted are closed to resync', async (t) => {
  const w = await new World(2).open();
  t.teardown(() => w.close());
  const alice = w.device('alice', 'phone', 0).connect();
  const bob = w.device('bob', 'phone', 0).connect();
  await settle();
  w.shards[0]!.shardRestarted(1);
  t.equal(alice.closed?.code, CLOSE.shardRestarting, "alice's user actor lived on shard 1");
  t.equal(bob.closed, null);
});

/**
 * Two users whose actors live on shard 0 and whose direct conversation lives on shard 1, with 3 shards
 * (with 2, FNV-1a's parity makes that placement impossible).
 */
function readPlacement(): { a: string; b: string; conv: string } {
  for (let i = 0; i < 1000; i++) {
    const a = `ra${i}`;
    const b = `rb${i}`;
    const conv = directConversationId(a, b);
    if (shardOf(a, 3) === 0 && shardOf(b, 3) === 0 && shardOf(conv, 3) === 1) return { a, b, conv };
  }
  throw new Error('no placement found');
}

t.test('a read lost with a crashed conversation shard closes the session with 4005 (the client reads again)', async (t) => {
  const w = await new World(3).open();
  t.teardown(() => w.close());
  const { a, b, conv } = readPlacement();
  const sender = w.device(a, 'phone', 0).connect();
  const reader = w.device(b, 'phone', 0).connect();
  await settle();
  sender.send({ t: 'send', id: 1, to: b, cmid: 'c1', body: bytes('x') });
  await until(() => reader.msgs(conv).length === 1, 'delivered');
  w.net.cut.add(1); // shard 1, home of the conversation, dies: the read never arrives
  reader.send({ t: 'read', conv, seq: 1 });
  await settle();
  t.equal(reader.closed, null, 'nothing answers the read meanwhile');
  w.net.cut.delete(1);
  w.shards[0]!.shardRestarted(1);
  t.equal(reader.closed?.code, CLOSE.shardRestarting, 'the reader is told to reconnect');
  t.equal(sender.closed, null, 'a session with nothing in flight on shard 1 stays open');
});

t.test('a confirmed read keeps its session open across a restart of the conversation shard', async (t) => {
  const w = await new World(3).open();
  t.teardown(() => w.close());
  const { a, b, conv } = readPlacement();
  const sender = w.device(a, 'phone', 0).connect();
  const reader = w.device(b, 'phone', 0).connect();
  const other = w.device(b, 'laptop', 0).connect();
  await settle();
  sender.send({ t: 'send', id: 1, to: b, cmid: 'c1', body: bytes('x') });
  await until(() => reader.msgs(conv).length === 1, 'delivered');
  reader.send({ t: 'read', conv, seq: 1 });
  await until(() => sender.of('receipt').some((r) => r.kind === 'read'), 'the read receipt reached the sender');
  await settle();
  t.same(reader.of('receipt'), [], 'the confirmation is not sent to the reading device');
  t.match(other.of('receipt'), [{ t: 'receipt', conv, kind: 'read', user: b, seq: 1 }], "the reader's other device hears of the read");
  t.notOk('device' in other.of('receipt')[0]!, 'a read receipt names no device');
  w.shards[0]!.shardRestarted(1);
  t.equal(reader.closed, null, 'its read was confirmed: nothing was lost on shard 1');
});

t.test('sync rounds on one shard run at most maxConcurrentReads at once', async (t) => {
  const w = await new World(2, {}, { maxConcurrentReads: 1 }).open();
  t.teardown(() => w.close());
  const alice = w.device('alice', 'phone', 0).connect();
  const bob = w.device('bob', 'phone', 0).connect();
  await settle();
  alice.send({ t: 'send', id: 1, to: 'bob', cmid: 'c', body: bytes('x') });
  await until(() => alice.of('sent').length === 1, 'sent');
  // Reads inside the limited part: a sync round reads the user's read cursors, a history page reads
  // backwards. (The device's cursors and conversation list are read before the round takes its
  // slot, while it may wait for an offline-flush permit.)
  let active = 0;
  let peak = 0;
  const slow = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    peak = Math.max(peak, ++active);
    await new Promise((r) => setTimeout(r, 20));
    try {
      return await fn(...a);
    } finally {
      active--;
    }
  };
  w.raw.getRead = slow(w.raw.getRead.bind(w.raw));
  w.raw.readBackward = slow(w.raw.readBackward.bind(w.raw));
  alice.send({ t: 'sync', id: 2 });
  bob.send({ t: 'sync', id: 3 });
  alice.send({ t: 'history', id: 4, conv: CONV, limit: 5 });
  await until(() => alice.of('synced').length === 1 && bob.of('synced').length === 1 && alice.of('history.page').length === 1, 'all answered');
  t.equal(peak, 1);
  alice.send({ t: 'sync', id: 5 });
  alice.send({ t: 'sync', id: 6 });
  await until(() => alice.of('error').length === 1, 'second concurrent sync refused');
  t.match(alice.of('error')[0], { id: 6, code: 'too_many_inflight' });
  const ghost = w.device('carol', 'phone', 0).connect();
  ghost.send({ t: 'history', id: 7, conv: 'g:missing', limit: 5 });
  await until(() => ghost.of('error').length === 1, 'history of a missing conversation');
  t.match(ghost.of('error')[0], { id: 7, code: 'not_found' });
});
