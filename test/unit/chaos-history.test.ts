/**
 * The chaos tests' history checker (test/support/chaos/history.ts) on synthetic histories: clean
 * ones pass, and each kind of violation is found (the checker must be able to fail).
 */
import t, { type Test } from 'tap';
import { History, describeViolations, type ViolationKind } from '../support/chaos/history.js';

const CONV = 'd:alice:bob';
const A1 = 'alice/phone';
const A2 = 'alice/laptop';
const B1 = 'bob/phone';
const mid = (seq: number): string => `M${String(seq).padStart(25, '0')}`;

/** alice has two devices, bob one; one direct conversation. */
function base(): History {
  const h = new History();
  h.device('alice', 'phone');
  h.device('alice', 'laptop');
  h.device('bob', 'phone');
  h.conversation(CONV, ['alice', 'bob']);
  return h;
}

interface Clock {
  t: number;
}

/** A send that goes right: submitted, answered on the wire, reported. */
function send(h: History, c: Clock, dev: string, cmid: string, seq: number, opts: { dup?: boolean } = {}): void {
  h.submit(c.t++, dev, CONV, cmid, `body ${dev} ${cmid}`);
  const ack = { conv: CONV, seq, mid: mid(seq), dup: opts.dup ?? false };
  h.wireAck(c.t++, dev, cmid, ack);
  h.reported(c.t++, dev, cmid, ack);
}

/** `dev` receives seq, sent by `from` with `cmid` (on the wire, then handed to the app). */
function receive(h: History, c: Clock, dev: string, seq: number, from: string, cmid: string, source = 'live'): void {
  const [user, device] = from.split('/') as [string, string];
  const sameUser = dev.split('/')[0] === user;
  const entry = { seq, mid: mid(seq), from: user, fdev: device, ...(sameUser ? { cmid } : {}) };
  h.wireEntry(c.t++, dev, CONV, entry, source === 'live' ? 'msg' : 'sync.batch');
  h.deliver(c.t++, dev, { ...entry, conv: CONV, body: `body ${from} ${cmid}`, source });
}

/** A clean exchange: alice/phone sends 1 and 3, bob sends 2; every other device gets each. */
function clean(): { h: History; c: Clock } {
  const h = base();
  const c = { t: 1000 };
  send(h, c, A1, 'c1', 1);
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  send(h, c, B1, 'c2', 2);
  receive(h, c, A1, 2, B1, 'c2');
  receive(h, c, A2, 2, B1, 'c2');
  send(h, c, A1, 'c3', 3);
  receive(h, c, B1, 3, A1, 'c3');
  receive(h, c, A2, 3, A1, 'c3', 'sync');
  h.receipt(c.t++, A1, { conv: CONV, kind: 'delivered', user: 'bob', device: 'phone', seq: 3, source: 'live' });
  h.receipt(c.t++, B1, { conv: CONV, kind: 'read', user: 'alice', seq: 2, source: 'live' });
  return { h, c };
}

function only(t: Test, h: History, kind: ViolationKind, n = 1): void {
  const r = h.check();
  t.notOk(r.ok, `the check fails (${kind})`);
  t.equal(r.countByKind[kind], n, `${n} ${kind} violation(s) found:\n${describeViolations(r)}`);
  const others = Object.entries(r.countByKind).filter(([k, v]) => k !== kind && v > 0);
  t.same(others, [], `no other kind of violation:\n${describeViolations(r)}`);
}

t.test('a clean history passes with the right figures', async (t) => {
  const { h } = clean();
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
  t.same(r.violations, []);
  t.match(r.figures, { sent: 3, acked: 3, failed: 0, unsettled: 0, delivered: 6, expectedDeliveries: 6, wireEntries: 6, redelivered: 0, receipts: 2, lostAcked: 0, duplicates: 0, orderViolations: 0, conflicts: 0 });
  t.same([...h.ackedHeads()], [[CONV, 3]]);
  t.equal(h.firstAckAfter(1000), 1002, 'first ack at or after a time');
});

t.test('redeliveries dropped by the SDK, retried sends answered dup, and own entries from sync are clean', async (t) => {
  const h = base();
  const c = { t: 0 };
  // alice/phone's first answer was lost: the retry is answered dup with the same place.
  h.submit(c.t++, A1, CONV, 'c1', `body ${A1} c1`);
  h.wireAck(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: false });
  h.wireAck(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: true });
  h.reported(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: true });
  receive(h, c, B1, 1, A1, 'c1');
  h.wireEntry(c.t++, B1, CONV, { seq: 1, mid: mid(1), from: 'alice', fdev: 'phone' }, 'msg'); // redelivery, dropped
  receive(h, c, A2, 1, A1, 'c1', 'sync');
  // bob's answer never came: the SDK settled it from its own entry in a sync batch.
  h.submit(c.t++, B1, CONV, 'c2', `body ${B1} c2`);
  h.wireEntry(c.t++, B1, CONV, { seq: 2, mid: mid(2), from: 'bob', fdev: 'phone', cmid: 'c2' }, 'sync.batch');
  h.reported(c.t++, B1, 'c2', { conv: CONV, seq: 2, mid: mid(2), dup: true });
  receive(h, c, A1, 2, B1, 'c2', 'sync');
  receive(h, c, A2, 2, B1, 'c2');
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
  t.equal(r.figures.redelivered, 1);
  t.equal(r.figures.acked, 2);
});

t.test('an acked message a member device never got is lost', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  receive(h, c, B1, 1, A1, 'c1');
  // alice/laptop never gets it
  only(t, h, 'lost');
  t.equal(h.check().figures.lostAcked, 1);
});

t.test('another message at the acked seq does not stand in for the acked one: conflict and lost', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  receive(h, c, A2, 1, A1, 'c1');
  // bob/phone gets a different message at seq 1 (a forgetful store handed seq 1 out again)
  send(h, c, A2, 'c9', 9);
  h.wireEntry(c.t++, B1, CONV, { seq: 1, mid: 'X'.repeat(26), from: 'alice', fdev: 'laptop' }, 'msg');
  h.deliver(c.t++, B1, { seq: 1, mid: 'X'.repeat(26), from: 'alice', fdev: 'laptop', conv: CONV, body: `body ${A2} c9`, source: 'live' });
  const r = h.check();
  t.notOk(r.ok);
  t.ok(r.countByKind.conflict >= 1, describeViolations(r));
  t.ok(r.countByKind.lost >= 1, 'the acked message at seq 1 never reached bob');
});

t.test('an unacked (failed) send that nobody got is not lost, but an unsettled one is reported', async (t) => {
  const h = base();
  const c = { t: 0 };
  h.submit(c.t++, A1, CONV, 'c1', 'body x');
  h.failed(c.t++, A1, 'c1', 'forbidden');
  let r = h.check();
  t.ok(r.ok, describeViolations(r));
  t.equal(r.figures.failed, 1);
  h.submit(c.t++, A1, CONV, 'c2', 'body y');
  only(t, h, 'unsettled');
  r = h.check();
  t.equal(r.figures.unsettled, 1);
});

t.test('a failed send that was stored anyway is found', async (t) => {
  const h = base();
  const c = { t: 0 };
  h.submit(c.t++, A1, CONV, 'c1', `body ${A1} c1`);
  h.failed(c.t++, A1, 'c1', 'internal');
  h.wireEntry(c.t++, B1, CONV, { seq: 1, mid: mid(1), from: 'alice', fdev: 'phone' }, 'msg');
  h.deliver(c.t++, B1, { seq: 1, mid: mid(1), from: 'alice', fdev: 'phone', conv: CONV, body: `body ${A1} c1`, source: 'live' });
  only(t, h, 'failed-but-stored');
});

t.test('a device handed the same message twice is a duplicate', async (t) => {
  const { h, c } = clean();
  receive(h, c, B1, 1, A1, 'c1', 'sync');
  only(t, h, 'duplicate');
  t.equal(h.check().figures.duplicates, 1);
});

t.test('one submission stored at two seqs is stored twice', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  // The retry was stored again at seq 2 (idempotency broken); bob gets the same body twice.
  h.wireEntry(c.t++, B1, CONV, { seq: 2, mid: mid(2), from: 'alice', fdev: 'phone' }, 'msg');
  h.deliver(c.t++, B1, { seq: 2, mid: mid(2), from: 'alice', fdev: 'phone', conv: CONV, body: `body ${A1} c1`, source: 'live' });
  const r = h.check();
  t.notOk(r.ok);
  t.equal(r.countByKind['stored-twice'], 1, describeViolations(r));
  t.ok(r.figures.duplicates >= 1);
});

t.test('a device handed an older seq after a newer one is an order violation', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  send(h, c, A1, 'c2', 2);
  receive(h, c, B1, 2, A1, 'c2');
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  receive(h, c, A2, 2, A1, 'c2');
  const r = h.check();
  t.notOk(r.ok);
  t.equal(r.countByKind.order, 1, describeViolations(r));
  t.equal(r.countByKind.gap, 1, 'seq 2 was handed over before seq 1 was held');
  t.equal(r.figures.orderViolations, 2);
  t.equal(r.countByKind.lost, 0);
});

t.test('a device handed seq 3 without seq 2 has a gap, even if 2 arrives later', async (t) => {
  const { h, c } = clean();
  // a fresh exchange on another device pair: bob/phone gets 5 before 4
  send(h, c, A1, 'c4', 4);
  send(h, c, A1, 'c5', 5);
  receive(h, c, A2, 4, A1, 'c4');
  receive(h, c, A2, 5, A1, 'c5');
  receive(h, c, B1, 5, A1, 'c5');
  const r = h.check();
  t.notOk(r.ok);
  t.equal(r.countByKind.gap, 1, describeViolations(r));
  t.equal(r.countByKind.lost, 1, 'and 4 never arrived');
});

t.test("a device's own sends fill its gaps", async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, B1, 'c1', 1);
  receive(h, c, A1, 1, B1, 'c1');
  receive(h, c, A2, 1, B1, 'c1');
  send(h, c, A1, 'c2', 2);
  receive(h, c, A2, 2, A1, 'c2');
  receive(h, c, B1, 2, A1, 'c2');
  send(h, c, B1, 'c3', 3);
  receive(h, c, A1, 3, B1, 'c3'); // alice/phone holds 2 as its own send
  receive(h, c, A2, 3, B1, 'c3');
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
});

t.test('two messages at one seq are a conflict (two writers)', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  // bob's send is acked at seq 1 too, with another id: an unfenced second writer
  h.submit(c.t++, B1, CONV, 'c2', `body ${B1} c2`);
  const ack = { conv: CONV, seq: 1, mid: 'OTHER0000000000000000000000', dup: false };
  h.wireAck(c.t++, B1, 'c2', ack);
  h.reported(c.t++, B1, 'c2', ack);
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  const r = h.check();
  t.notOk(r.ok);
  t.ok(r.countByKind.conflict >= 1, describeViolations(r));
  t.ok(r.figures.conflicts >= 1);
});

t.test('one cmid acked at two places is inconsistent', async (t) => {
  const h = base();
  const c = { t: 0 };
  send(h, c, A1, 'c1', 1);
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  h.wireAck(c.t++, A1, 'c1', { conv: CONV, seq: 7, mid: mid(1), dup: true });
  const r = h.check();
  t.notOk(r.ok);
  t.ok(r.countByKind['ack-inconsistent'] >= 1, describeViolations(r));
});

t.test('a send reported stored without a sent frame or own entry is unbacked', async (t) => {
  const h = base();
  const c = { t: 0 };
  h.submit(c.t++, A1, CONV, 'c1', `body ${A1} c1`);
  h.reported(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: false });
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  only(t, h, 'unbacked-sent');
});

t.test('a sent frame that arrives only after the report does not back it', async (t) => {
  const h = base();
  const c = { t: 0 };
  h.submit(c.t++, A1, CONV, 'c1', `body ${A1} c1`);
  h.reported(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: false });
  h.wireAck(c.t++, A1, 'c1', { conv: CONV, seq: 1, mid: mid(1), dup: false });
  receive(h, c, B1, 1, A1, 'c1');
  receive(h, c, A2, 1, A1, 'c1');
  only(t, h, 'unbacked-sent');
});

t.test('a received message nobody sent is a phantom; a wrong sender or conversation is corrupt', async (t) => {
  let { h, c } = clean();
  h.wireEntry(c.t++, B1, CONV, { seq: 4, mid: mid(4), from: 'alice', fdev: 'phone' }, 'msg');
  h.deliver(c.t++, B1, { seq: 4, mid: mid(4), from: 'alice', fdev: 'phone', conv: CONV, body: 'never submitted', source: 'live' });
  only(t, h, 'phantom');

  ({ h, c } = clean());
  send(h, c, A1, 'c4', 4);
  receive(h, c, A2, 4, A1, 'c4');
  h.deliver(c.t++, B1, { seq: 4, mid: mid(4), from: 'alice', fdev: 'laptop', conv: CONV, body: `body ${A1} c4`, source: 'live' });
  only(t, h, 'corrupt');
});

t.test("a group's membership events are clean when the server wrote them, and corrupt otherwise", async (t) => {
  const GROUP = 'g:CHAOSGROUP0000000000000000';
  const gmid = (seq: number): string => `G${String(seq).padStart(25, '0')}`;
  const event = (h: History, c: Clock, dev: string, fdev: string, from = 'alice'): void => {
    h.wireEntry(c.t++, dev, GROUP, { seq: 1, mid: gmid(1), from, fdev }, 'msg');
    h.deliver(c.t++, dev, { seq: 1, mid: gmid(1), from, fdev, conv: GROUP, body: '', source: 'live', sys: 'create' });
  };
  const group = (fdev: string, from?: string): History => {
    const { h, c } = clean();
    h.conversation(GROUP, ['alice', 'bob']);
    event(h, c, B1, fdev, from);
    event(h, c, A2, fdev, from);
    // Then a message at seq 2: the event at seq 1 is held, so this is no gap.
    h.submit(c.t++, A1, GROUP, 'g1', `body ${A1} g1`);
    const ack = { conv: GROUP, seq: 2, mid: gmid(2), dup: false };
    h.wireAck(c.t++, A1, 'g1', ack);
    h.reported(c.t++, A1, 'g1', ack);
    for (const dev of [B1, A2]) {
      const entry = { seq: 2, mid: gmid(2), from: 'alice', fdev: 'phone', ...(dev === A2 ? { cmid: 'g1' } : {}) };
      h.wireEntry(c.t++, dev, GROUP, entry, 'msg');
      h.deliver(c.t++, dev, { ...entry, conv: GROUP, body: `body ${A1} g1`, source: 'live' });
    }
    return h;
  };
  const r = group('~').check();
  t.ok(r.ok, `an event from the reserved device, then a message: clean\n${describeViolations(r)}`);
  only(t, group('phone'), 'corrupt', 2);
  only(t, group('~', 'mallory'), 'corrupt', 2);

  // "Delivered to all" (`*`): every member must hold the seq; bob holds 2, alice (the sender) too.
  const all = group('~');
  all.receipt(90_000, A1, { conv: GROUP, kind: 'delivered', user: '*', seq: 2, source: 'live' });
  const ok = all.check();
  t.ok(ok.ok, `a * receipt every member backs is clean\n${describeViolations(ok)}`);
  all.receipt(90_001, A1, { conv: GROUP, kind: 'delivered', user: '*', seq: 3, source: 'live' });
  only(t, all, 'receipt-ahead');
});

t.test('a receipt claiming more than the device held is ahead; a receipt going back regresses', async (t) => {
  let { h, c } = clean();
  send(h, c, A1, 'c4', 4);
  receive(h, c, A2, 4, A1, 'c4');
  // bob/phone has not got 4 yet, but alice hears it was delivered there
  h.receipt(c.t++, A1, { conv: CONV, kind: 'delivered', user: 'bob', device: 'phone', seq: 4, source: 'live' });
  receive(h, c, B1, 4, A1, 'c4');
  only(t, h, 'receipt-ahead');

  ({ h, c } = clean());
  h.receipt(c.t++, A1, { conv: CONV, kind: 'delivered', user: 'bob', device: 'phone', seq: 2, source: 'live' });
  only(t, h, 'receipt-regress');
});

t.test('a read receipt counts the best device of the user; own sends count as held', async (t) => {
  const { h, c } = clean();
  // alice read up to 3: alice/phone holds 1 and 3 (own) and 2 (received)
  h.receipt(c.t++, B1, { conv: CONV, kind: 'read', user: 'alice', seq: 3, source: 'live' });
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
});

t.test('a history page that leaves out a message acked before the request is found', async (t) => {
  let { h, c } = clean();
  // alice/laptop asks for everything below 3 after 1 and 2 were acked, and gets only 2
  h.historyPage(c.t++, A2, { conv: CONV, before: 3, limit: 10, requestedAt: c.t - 1, seqs: [2], expired: false });
  only(t, h, 'history-missed');

  // a message acked only after the request was sent may be missing from the page; expired pages are authoritative
  ({ h, c } = clean());
  h.historyPage(c.t++, A2, { conv: CONV, before: 3, limit: 10, requestedAt: 1000, seqs: [], expired: false });
  h.historyPage(c.t++, A2, { conv: CONV, before: 3, limit: 10, requestedAt: c.t, seqs: [], expired: true });
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
});

t.test('a caught-up marker with a head below a message acked before the sync is found', async (t) => {
  let { h, c } = clean();
  h.synced(c.t++, B1, c.t - 1, { [CONV]: 2 });
  only(t, h, 'head-behind');

  ({ h, c } = clean());
  h.synced(c.t++, B1, c.t - 1, {});
  only(t, h, 'head-behind');

  // a head that only misses messages acked after the sync was sent is fine
  ({ h, c } = clean());
  h.synced(c.t++, B1, 1003, { [CONV]: 1 });
  h.synced(c.t++, A2, c.t - 1, { [CONV]: 3 });
  const r = h.check();
  t.ok(r.ok, describeViolations(r));
});

t.test('a body submitted twice is a harness error, not a silent mix-up', async (t) => {
  const h = base();
  h.submit(0, A1, CONV, 'c1', 'same');
  t.throws(() => h.submit(1, A1, CONV, 'c2', 'same'), /submitted twice/);
});
