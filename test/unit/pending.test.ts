import t from 'tap';
import { DevicePending } from '../../src/actors/pending.js';
import type { MsgFrame } from '../../src/protocol/client-frames.js';

const frame = (conv: string, seq: number): MsgFrame => ({ t: 'msg', conv, kind: 'group', seq, mid: `m${seq}`, from: 'u', fdev: 'd', body: new Uint8Array(0), ts: 0 });

t.test('cumulative acks drop a prefix per conversation, whatever order deliveries came in', async (t) => {
  const p = new DevicePending();
  for (const seq of [3, 1, 2, 5, 4]) p.add(frame('g:a', seq), 100, 1000);
  p.add(frame('g:b', 7), 200, 1000);
  t.equal(p.size, 6);
  t.same(p.ack('g:a', 0), [], 'nothing at or below 0');
  t.same(p.ack('g:a', 3).map((e) => e.frame.seq), [1, 2, 3], 'the prefix up to 3, in seq order');
  t.equal(p.size, 3);
  t.same(p.ack('g:x', 9), [], 'an unknown conversation');
  t.same(p.ack('g:a', 9).map((e) => e.frame.seq), [4, 5]);
  t.same(p.ack('g:a', 9), [], 'the conversation is gone once empty');
  t.equal(p.size, 1);
  t.same(p.ack('g:b', 7).map((e) => e.frame.seq), [7]);
  t.equal(p.size, 0);
});

t.test('a repeat refreshes the frame and keeps the first push time; due and nextDue', async (t) => {
  const p = new DevicePending();
  p.add(frame('g:b', 2), 100, 50);
  p.add(frame('g:a', 1), 120, 50);
  const again = frame('g:b', 2);
  p.add(again, 500, 50);
  t.equal(p.size, 2, 'not counted twice');
  t.equal(p.nextDue(), 150);
  t.same(p.due(170).map((e) => [e.frame.conv, e.frame.seq, e.firstPushedAt]), [['g:a', 1, 120], ['g:b', 2, 100]], 'conversation then seq order');
  t.equal(p.due(170)[1]!.frame, again, 'the newer frame object is kept');
  t.same(p.due(149), []);
  p.clear();
  t.equal(p.size, 0);
  t.equal(p.nextDue(), null);
});
