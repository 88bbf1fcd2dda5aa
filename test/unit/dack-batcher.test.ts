import t from 'tap';
import { DackBatcher, dacksOf } from '../../src/actors/dack-batcher.js';
import type { ConvDelivered } from '../../src/actors/messages.js';
import type { SessionRef } from '../../src/actors/session.js';

const ref = (user: string, device: string, connId: number): SessionRef => ({ user, device, node: 'n1', shard: 0, connId });

t.test('dacks are coalesced per (conversation, device) into one message per conversation per turn', async (t) => {
  const told: [string, ConvDelivered][] = [];
  let deferred: (() => void)[] = [];
  const b = new DackBatcher((conv, msg) => told.push([conv, msg]), (fn) => void deferred.push(fn));
  b.add('g:1', ref('a', 'd1', 1), 5);
  b.add('g:1', ref('a', 'd1', 1), 3);
  b.add('g:1', ref('b', 'd1', 2), 4);
  b.add('g:2', ref('a', 'd1', 1), 9);
  b.add('g:1', ref('a', 'd2', 3), 1);
  const newer = ref('a', 'd1', 7);
  b.add('g:1', newer, 6);
  t.equal(deferred.length, 1, 'one flush scheduled for the turn');
  t.equal(told.length, 0, 'nothing told before the turn ends');
  deferred[0]!();
  deferred = [];
  t.equal(told.length, 2, 'one message per conversation');
  const g1 = dacksOf(told.find(([c]) => c === 'g:1')![1]);
  t.same(g1.map((d) => [d.session.user, d.session.device, d.seq]).sort(), [['a', 'd1', 6], ['a', 'd2', 1], ['b', 'd1', 4]], 'highest seq per device, none lost');
  t.equal(g1.find((d) => d.session.device === 'd1' && d.session.user === 'a')!.session, newer, 'the latest session answers for the device');
  const g2 = told.find(([c]) => c === 'g:2')![1];
  t.same([g2.seq, g2.more], [9, undefined], 'a single dack stays a plain delivered message');
  b.add('g:1', ref('a', 'd1', 7), 8);
  t.equal(deferred.length, 1, 'the next turn schedules again');
  b.flush();
  t.equal(told.length, 3);
  deferred[0]!();
  t.equal(told.length, 3, 'a flush with nothing queued tells nobody');
});
