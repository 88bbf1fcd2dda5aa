/**
 * Scenario 1, end to end through the SDK on a real node: two users on three devices (alice: phone
 * and laptop, bob: phone) exchange messages both ways, interleaved and concurrently. Every device
 * ends with the same seq -> message map, received in seq order without duplicates; a user's own
 * sends reach their other device (with cmid); every send is acknowledged with `sent`; delivered and
 * read receipts reach the sender's online devices. Runs on the embedded store and on Cassandra.
 */
import t, { type Test } from 'tap';
import { directConversationId } from '../../src/protocol/ids.js';
import { compact, describeAll, range, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

function assertSeqOrder(t: Test, c: E2eClient, conv: string): void {
  const seqs = c.messages(conv).map((m) => m.seq);
  const ascending = seqs.every((s, i) => i === 0 || s > seqs[i - 1]!);
  t.ok(ascending, `${c.label} received ${conv} in strictly ascending seq order, no duplicates: ${compact(seqs)}`);
}

for (const engine of e2eEngines('e2e_conv')) {
  t.test(`${engine.name}: two users on three devices share one order, see own sends on the other device, and get sent and receipts`, async (t) => {
    const n = await startE2eNode(t, engine);
    const alice = n.user('alice');
    const bob = n.user('bob');
    const aPhone = n.client(alice, 'phone');
    const aLaptop = n.client(alice, 'laptop');
    const bPhone = n.client(bob, 'phone');
    const all = [aPhone, aLaptop, bPhone];
    const describe = describeAll(all);
    await Promise.all(all.map((c) => c.connect()));
    const conv = directConversationId(alice, bob);

    // Interleaved one at a time, then all three devices at once, then alternating again.
    await aPhone.send({ to: bob }, 'hello bob, from the phone');
    await bPhone.send({ to: alice }, 'hi alice');
    await aLaptop.send({ conv }, 'and hello from the laptop');
    await Promise.all([
      ...range(1, 6).map((i) => aPhone.send({ to: bob }, `phone burst ${i}`)),
      ...range(1, 6).map((i) => bPhone.send({ conv }, `bob burst ${i}`)),
      ...range(1, 6).map((i) => aLaptop.send({ to: bob }, `laptop burst ${i}`)),
    ]);
    for (let i = 1; i <= 4; i++) {
      await Promise.all([bPhone.send({ to: alice }, `bob turn ${i}`), aLaptop.send({ conv }, `laptop turn ${i}`)]);
      await aPhone.send({ conv }, `phone turn ${i}`);
    }
    // alice's note to herself reaches her laptop, never bob.
    const self = directConversationId(alice, alice);
    for (let i = 1; i <= 3; i++) await aPhone.send({ to: alice }, `note ${i}`);

    const total = 3 + 18 + 12;
    const results = all.flatMap((c) => c.outgoing.filter((o) => o.result?.conv === conv).map((o) => o.result!));
    t.equal(results.length, total, `every send to ${conv} was stored`);
    t.ok(results.every((r) => !r.dup), 'no send was reported as a duplicate');
    t.same([...new Set(results.map((r) => r.seq))].sort((a, b) => a - b), range(1, total), 'the stored seqs are exactly 1..N, each once');

    for (const c of all) {
      const sent = c.since(0).flatMap((l) => (l.k === 'sent' ? [l.e] : []));
      t.equal(sent.length, c.outgoing.length, `${c.label} got a sent event for each of its ${c.outgoing.length} sends`);
      for (const o of c.outgoing) {
        t.ok(sent.some((s) => s.seq === o.result?.seq && s.mid === o.result.mid && s.conv === o.result.conv), `${c.label}: sent event for "${o.body}"`);
      }
    }

    await waitUntil(() => all.every((c) => c.view(conv).size === total && c.sdk.cursor(conv) === total), `every device to hold seqs 1..${total} of ${conv}`, describe);
    const reference = aPhone.view(conv);
    for (const c of all) {
      assertSeqOrder(t, c, conv);
      const view = c.view(conv);
      const diff = range(1, total).filter((s) => view.get(s)?.mid !== reference.get(s)?.mid || view.get(s)?.body !== reference.get(s)?.body);
      t.same(diff, [], `${c.label} has the same message at every seq as alice/phone`);
      t.same(c.messages(conv).filter((m) => m.fdev === c.label.split('/')[1] && m.from === c.label.split('/')[0]), [], `${c.label} got no msg of its own sends`);
    }

    // Own sends on the other device: with cmid and the sending device; the other user gets no cmid.
    const laptopSeesPhone = aLaptop.messages(conv).filter((m) => m.from === alice && m.fdev === 'phone');
    t.equal(laptopSeesPhone.length, aPhone.outgoing.filter((o) => o.result?.conv === conv).length, "alice/laptop got every one of alice/phone's messages");
    t.ok(laptopSeesPhone.every((m) => typeof m.cmid === 'string'), 'each carries its cmid');
    t.equal(aPhone.messages(conv).filter((m) => m.fdev === 'laptop').length, aLaptop.outgoing.length, "alice/phone got every one of alice/laptop's messages");
    t.ok(bPhone.messages(conv).every((m) => m.cmid === undefined), 'bob never sees alice’s cmids');
    await waitUntil(() => aLaptop.view(self).size === 3, 'alice/laptop to get the 3 notes to self', describe);
    t.same(aLaptop.messages(self).map((m) => m.seq), [1, 2, 3], 'notes to self arrive on the other device in order');
    t.same(bPhone.messages(self), [], 'bob gets nothing of alice’s notes to self');

    // Delivered receipts: each side's devices dack what they hold; the other side's devices hear it.
    const hasReceipt = (c: E2eClient, kind: 'delivered' | 'read', user: string, seq: number) =>
      c.receipts().some((r) => r.conv === conv && r.kind === kind && r.user === user && r.seq >= seq && r.source === 'live');
    await waitUntil(() => hasReceipt(aPhone, 'delivered', bob, total) && hasReceipt(aLaptop, 'delivered', bob, total), `alice's devices to get bob's delivered receipt up to ${total}`, describe);
    t.ok(aPhone.receipts().every((r) => r.kind !== 'delivered' || r.user === bob), 'alice’s devices get delivered receipts of bob only');
    t.ok(aPhone.receipts().some((r) => r.kind === 'delivered' && r.device === 'phone'), 'a live delivered receipt names the device that acked');
    await waitUntil(() => hasReceipt(bPhone, 'delivered', alice, total), `bob/phone to get alice's delivered receipt up to ${total}`, describe);

    // Read receipts: bob reads everything; alice's phone reads up to 10.
    bPhone.sdk.markRead(conv, total);
    await waitUntil(() => hasReceipt(aPhone, 'read', bob, total) && hasReceipt(aLaptop, 'read', bob, total), `alice's devices to get bob's read receipt at ${total}`, describe);
    t.match(aLaptop.sdk.receipts(conv), { delivered: total, read: total }, 'alice/laptop shows bob delivered and read everything');
    aPhone.sdk.markRead(conv, 10);
    await waitUntil(() => hasReceipt(bPhone, 'read', alice, 10), "bob/phone to get alice's read receipt at 10", describe);
    await waitUntil(() => aLaptop.sdk.readCursor(conv) === 10, "alice/laptop to learn alice's own read cursor from the phone", describe);
    t.notOk(aPhone.receipts().some((r) => r.kind === 'read' && r.user === alice), 'the reading device gets no receipt of its own read');
    const readSeqs = aPhone.receipts().filter((r) => r.kind === 'read').map((r) => r.seq);
    t.ok(readSeqs.every((s, i) => i === 0 || s > readSeqs[i - 1]!), `receipts only move forward (${readSeqs.join(',')})`);
  });
}
