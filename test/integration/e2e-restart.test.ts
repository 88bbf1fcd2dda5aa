/**
 * Scenario 4, end to end through the SDK: the node is stopped (drain) and started again on the same
 * port over the same store (embedded: the same directory; scylla: the same keyspace). Everything
 * acknowledged before is still there and reaches the devices (live clients reconnect by themselves
 * and sync; a restarted SDK resumes from its cursors; a new device gets it all); sends in flight at
 * the stop and sends made while the node was down are stored once each; new sends continue with the
 * next seq, never reusing one; a cmid stored before the restart is still recognised as a dup.
 */
import t from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { compact, describeAll, range, text, waitUntil } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

for (const engine of e2eEngines('e2e_restart')) {
  t.test(`${engine.name}: after a node restart acked messages are kept and delivered, and seqs continue without reuse`, async (t) => {
    const n = await startE2eNode(t, engine);
    const alice = n.user('alice');
    const bob = n.user('bob');
    const conv = directConversationId(alice, bob);
    const aPhone = n.client(alice, 'phone');
    const bPhone = n.client(bob, 'phone');
    const bLaptop = n.client(bob, 'laptop');
    const describe = describeAll([aPhone, bPhone, bLaptop]);
    await Promise.all([aPhone.connect(), bPhone.connect(), bLaptop.connect()]);

    // Before: 4 messages with bob's laptop online, which then stops (its app keeps its cursors).
    for (let i = 1; i <= 2; i++) {
      await aPhone.send({ to: bob }, `alice ${i}`, `a-${i}`);
      await bPhone.send({ to: alice }, `bob ${i}`);
    }
    await waitUntil(() => bLaptop.sdk.cursor(conv) === 4, 'bob/laptop to hold 1..4', describe);
    const laptopCursors = bLaptop.sdk.cursors();
    bLaptop.close();
    for (let i = 3; i <= 8; i++) await aPhone.send({ to: bob }, `alice ${i}`, `a-${i}`);
    await waitUntil(() => bPhone.sdk.cursor(conv) === 10, 'bob/phone to hold 1..10', describe);

    // A burst in flight when the node starts draining: the stop begins as the 5th request goes out.
    const stopMark = [aPhone.mark(), bPhone.mark()] as const;
    let stopping: Promise<void> | undefined;
    aPhone.net.cutAfterSend = (f) => {
      if (f.t === 'send' && f.cmid === 'burst-5') stopping ??= n.stop();
      return false;
    };
    const burst = range(1, 10).map((i) => aPhone.send({ to: bob }, `burst ${i}`, `burst-${i}`));
    await waitUntil(() => stopping !== undefined, 'the stop to begin', describe);
    await stopping;
    aPhone.net.cutAfterSend = null;
    await waitUntil(() => aPhone.sdk.state === 'reconnecting' && bPhone.sdk.state === 'reconnecting', 'the clients to notice the stop', describe);
    t.ok(aPhone.reconnectCodes(stopMark[0]).includes(CLOSE.draining), `alice/phone was closed with 4000 (got ${aPhone.reconnectCodes(stopMark[0]).join(',')})`);
    const acked = new Map(aPhone.outgoing.filter((o) => o.result !== undefined).map((o) => [o.result!.seq, o.result!.mid]));
    for (const o of bPhone.outgoing) acked.set(o.result!.seq, o.result!.mid);
    t.ok(acked.size >= 10, `${acked.size} messages were acked before the stop (${acked.size - 10} of the burst)`);

    // While the node is down: a send waits in the outbox; the clients keep retrying.
    const whileDown = aPhone.send({ to: bob }, 'sent while the node was down', 'down-1');
    await waitUntil(() => aPhone.sdk.pendingSends().includes('down-1'), 'the send to wait in the outbox', describe);

    await n.start();
    await Promise.all([aPhone.waitSynced(stopMark[0]), bPhone.waitSynced(stopMark[1])]);
    t.pass('the live clients reconnected by themselves and caught up');
    const bursts = await Promise.all(burst);
    const down = await whileDown;
    const afterSeqs = [...bursts.map((r) => r.seq), down.seq].sort((a, b) => a - b);
    t.same(afterSeqs, range(11, 21), `the burst and the send made while down hold seqs 11..21, each once (got ${afterSeqs.join(',')})`);
    t.comment(`burst: ${bursts.filter((r) => r.dup).length} of 10 were stored before the stop and answered as dups after it`);
    for (const r of bursts) acked.set(r.seq, r.mid);
    acked.set(down.seq, down.mid);
    let head = 21;

    // New sends continue with the next seq.
    const next = await aPhone.send({ to: bob }, 'after the restart');
    t.match(next, { seq: head + 1, dup: false }, 'a new send gets the next seq');
    const reply = await bPhone.send({ to: alice }, 'reply after the restart');
    t.match(reply, { seq: head + 2, dup: false }, 'and the next one the seq after it');
    acked.set(next.seq, next.mid);
    acked.set(reply.seq, reply.mid);
    head += 2;

    // A cmid stored before the restart is still a dup (the idempotency record outlives the actors).
    const again = await aPhone.send({ to: bob }, 'alice 3 again', 'a-3');
    t.match(again, { dup: true, seq: 5, mid: acked.get(5) }, 're-send of a pre-restart cmid: dup with the original seq and mid');

    // Every device ends with the same messages at every seq, as acked.
    await waitUntil(() => bPhone.sdk.cursor(conv) === head && aPhone.sdk.cursor(conv) === head, `alice/phone and bob/phone at ${head}`, describe);
    const laptop = n.client(bob, 'laptop', { cursors: laptopCursors });
    await laptop.connect();
    const resumed = laptop.messages(conv).map((m) => m.seq);
    t.same(resumed, range(5, head), `bob/laptop resumed from its cursor 4: exactly 5..${head} (got ${compact(resumed)})`);
    const tablet = n.client(bob, 'tablet');
    await tablet.connect();
    t.same(tablet.messages(conv).map((m) => m.seq), range(1, head), `a new device gets 1..${head}`);
    for (const c of [aPhone, bPhone, tablet]) {
      const view = c.view(conv);
      const wrong = range(1, head).filter((s) => view.get(s)?.mid !== acked.get(s));
      t.same(wrong, [], `${c.label} holds the acked message at every seq`);
    }
    const bodies = tablet.messages(conv).map((m) => text(m.body));
    t.equal(new Set(bodies).size, head, 'no message is stored twice');
    t.ok(bodies.includes('sent while the node was down') && bodies.includes('burst 10'), 'the sends around the restart are there');
  });
}
