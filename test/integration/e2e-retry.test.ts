/**
 * Scenario 3, end to end through the SDK: a send whose connection drops is retried by the SDK under
 * the same cmid and never duplicated, whether the drop lost the request (before the server), lost
 * the answer (after the store), or came right after the request went out (either). The store then
 * holds one message per cmid, the recipient gets each once, and a manual re-send of a stored cmid is
 * answered `dup: true` with the original seq and mid. Embedded store and Cassandra.
 */
import t from 'tap';
import type { SendResult } from '../../src/client/index.js';
import type { ClientFrame, ServerFrame, SentFrame } from '../../src/protocol/client-frames.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { describeAll, range, text, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

/** A hook that fires once, on the first frame `pred` accepts, and remembers that frame. */
function once<F extends ClientFrame | ServerFrame>(pred: (f: F) => boolean): { hook: (f: F) => boolean; hit: F | undefined } {
  const h = {
    hit: undefined as F | undefined,
    hook: (f: F): boolean => {
      if (h.hit !== undefined || !pred(f)) return false;
      h.hit = f;
      return true;
    },
  };
  return h;
}

/** Every message of `conv` the store holds, oldest first, read through history pages. */
async function storedMessages(c: E2eClient, conv: string) {
  const out = [];
  for (let before: number | undefined; ; ) {
    const page = await c.sdk.history(conv, before, 500);
    out.push(...page.messages);
    if (page.next === null) break;
    before = page.next;
  }
  return out.reverse();
}

for (const engine of e2eEngines('e2e_retry')) {
  t.test(`${engine.name}: a send retried after a dropped connection is stored once; a re-send of its cmid is a dup`, async (t) => {
    const n = await startE2eNode(t, engine);
    const alice = n.user('alice');
    const bob = n.user('bob');
    const conv = directConversationId(alice, bob);
    const aPhone = n.client(alice, 'phone');
    const bPhone = n.client(bob, 'phone');
    const describe = describeAll([aPhone, bPhone]);
    await Promise.all([aPhone.connect(), bPhone.connect()]);
    await aPhone.send({ to: bob }, 'first');

    // 1. Lost after the store: the `sent` answer is cut off before the SDK sees it.
    const lostAnswer = once<ServerFrame>((f) => f.t === 'sent');
    aPhone.net.cutOnReceive = lostAnswer.hook;
    const cutsBefore = aPhone.net.cuts;
    const a = await aPhone.send({ to: bob }, 'answer lost', 'cmid-answer-lost');
    const original = lostAnswer.hit as SentFrame | undefined;
    t.ok(original !== undefined && aPhone.net.cuts > cutsBefore, 'the connection dropped as the `sent` arrived');
    t.match(a, { dup: true, seq: original?.seq, mid: original?.mid }, 'the retry is answered as a duplicate with the original seq and mid');

    // 2. Lost before the server: the request never leaves; the retry is the first the server sees.
    const lostRequest = once<ClientFrame>((f) => f.t === 'send' && f.cmid === 'cmid-request-lost');
    aPhone.net.cutBeforeSend = lostRequest.hook;
    const b = await aPhone.send({ to: bob }, 'request lost', 'cmid-request-lost');
    t.ok(lostRequest.hit !== undefined, 'the connection dropped instead of sending the request');
    // `dup` may be true here: after a reconnect the SDK settles a send it sees in a sync batch as a dup.
    t.equal(b.seq, 3, `the retry stored it, once, as the next seq (dup: ${b.dup})`);

    // 3. Cut right after the request went out: the server may or may not have it; either way, once.
    const cutAfter = once<ClientFrame>((f) => f.t === 'send' && f.cmid === 'cmid-cut-after');
    aPhone.net.cutAfterSend = cutAfter.hook;
    const c = await aPhone.send({ to: bob }, 'cut right after', 'cmid-cut-after');
    t.ok(cutAfter.hit !== undefined, 'the connection dropped right after the request');
    t.equal(c.seq, 4, `stored as seq 4 (dup: ${c.dup})`);

    // 4. Many sends in flight when the connection drops (right after the 10th went out): each is stored once.
    const midBurst = once<ClientFrame>((f) => f.t === 'send' && f.cmid === 'cmid-burst-10');
    aPhone.net.cutAfterSend = midBurst.hook;
    const burst: Promise<SendResult>[] = range(1, 20).map((i) => aPhone.send({ to: bob }, `burst ${i}`, `cmid-burst-${i}`));
    const bursts = await Promise.all(burst);
    t.ok(midBurst.hit !== undefined, 'the connection dropped in the middle of the burst');
    t.same(bursts.map((r) => r.seq).sort((x, y) => x - y), range(5, 24), 'the 20 in-flight sends hold seqs 5..24, each once');

    const head = 24;
    t.ok(aPhone.reconnectCodes().length >= 4, `the SDK reconnected after every drop (codes ${aPhone.reconnectCodes().join(',')})`);
    t.same(aPhone.sdk.pendingSends(), [], 'the outbox is empty');
    t.notOk(aPhone.since(0).some((l) => l.k === 'error' && l.code !== 'client.disconnected' && l.code !== 'client.connect'), 'no unexpected error events');

    // The store holds one message per cmid, at dense seqs.
    const stored = await storedMessages(aPhone, conv);
    t.same(stored.map((m) => m.seq), range(1, head), `the store holds seqs 1..${head} and no more`);
    const cmids = stored.map((m) => m.cmid);
    t.equal(new Set(cmids).size, head, 'every stored message has its own cmid');
    for (const cmid of ['cmid-answer-lost', 'cmid-request-lost', 'cmid-cut-after']) {
      t.equal(cmids.filter((x) => x === cmid).length, 1, `${cmid} is stored once`);
    }

    // The recipient gets each message once.
    await waitUntil(() => bPhone.sdk.cursor(conv) === head, `bob/phone to hold 1..${head}`, describe);
    const bodies = bPhone.messages(conv).map((m) => text(m.body));
    t.equal(bodies.length, head, `bob/phone got ${head} messages`);
    t.equal(new Set(bodies).size, head, 'no body twice');

    // A manual re-send of a stored cmid (even with other bytes) is a dup with the original seq and mid.
    const again = await aPhone.send({ to: bob }, 'answer lost, sent again with other bytes', 'cmid-answer-lost');
    t.match(again, { dup: true, seq: a.seq, mid: a.mid }, 're-send: dup with the original seq and mid');
    const againBurst = await aPhone.send({ conv }, 'burst 7 again', 'cmid-burst-7');
    t.match(againBurst, { dup: true, seq: bursts[6]!.seq, mid: bursts[6]!.mid }, 're-send addressed by conv: the same answer');
    // The key is (device, cmid): the same cmid from alice's other device is a new message.
    const laptop = n.client(alice, 'laptop');
    await laptop.connect();
    const other = await laptop.send({ to: bob }, 'same cmid, other device', 'cmid-answer-lost');
    t.match(other, { dup: false, seq: head + 1 }, 'the same cmid from another device is a new message');

    const after = await storedMessages(aPhone, conv);
    t.same(after.map((m) => m.seq), range(1, head + 1), 'the re-sends added nothing but the other device’s message');
    t.equal(text(after.find((m) => m.seq === a.seq)!.body), 'answer lost', 'the stored body is the original one');
    await waitUntil(() => bPhone.sdk.cursor(conv) === head + 1, 'bob/phone to get the laptop’s message', describe);
    t.equal(bPhone.messages(conv).length, head + 1, 'bob/phone got no redelivery of the re-sent cmids');
  });
}
