/**
 * Groups end to end through the SDK on a real node (embedded store and Cassandra): creation (retried
 * with the same cmid: the same group), membership events delivered like messages in one order on
 * every device, a member added later (from its join floor), a member removed (it learns it and is
 * refused; offline, it learns it through sync, then the group drops out of its syncs), the
 * "delivered to all" and "read by all" receipts from the SDK's own dacks and reads, the per-member
 * receipts state, members pages, and a channel post reaching a subscriber.
 */
import t from 'tap';
import { ClientError } from '../../src/client/types.js';
import { compact, describeAll, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

const sysOf = (c: E2eClient, conv: string) => c.messages(conv).filter((m) => m.sys !== undefined);

for (const engine of e2eEngines('e2e_groups')) {
  t.test(`${engine.name}: a group through the SDK: create, events in order on every device, add, remove, all-receipts`, async (t) => {
    const n = await startE2eNode(t, engine);
    const [alice, bob, carol] = [n.user('alice'), n.user('bob'), n.user('carol')];
    const aPhone = n.client(alice, 'phone');
    const aLaptop = n.client(alice, 'laptop');
    const bPhone = n.client(bob, 'phone');
    const cPhone = n.client(carol, 'phone');
    const all = [aPhone, aLaptop, bPhone, cPhone];
    const describe = describeAll(all);
    await Promise.all(all.map((c) => c.connect()));

    const created = await aPhone.sdk.createGroup({ name: 'Trip', members: [bob], cmid: 'trip-1' });
    t.match(created.conv, /^g:/);
    t.equal(created.seq, 1, 'the create event is seq 1');
    t.same(await aPhone.sdk.createGroup({ name: 'Trip', members: [bob], cmid: 'trip-1' }), created, 'a retried create names the same group');
    const conv = created.conv;

    await aPhone.send({ conv }, 'hello group');
    await bPhone.send({ conv }, 'hi alice');
    const added = await aLaptop.sdk.addMembers(conv, [carol]);
    t.equal(added.seq, 4);
    t.same(await aLaptop.sdk.addMembers(conv, [carol]), { conv, seq: 0 }, 'adding again writes nothing');
    await cPhone.send({ conv }, 'carol here');
    await waitUntil(() => all.every((c) => c.sdk.cursor(conv) === 5), 'every device at seq 5', describe);

    // Every device sees the events it was a member for, at the same seqs, with the same content.
    const reference = sysOf(aLaptop, conv).map((m) => ({ seq: m.seq, sys: m.sys }));
    t.same(reference.map((e) => e.seq), [1, 4]);
    t.same(reference[1]!.sys, { op: 'add', by: alice, users: [carol], role: 'member' });
    for (const c of [aPhone, bPhone]) t.same(sysOf(c, conv).map((m) => ({ seq: m.seq, sys: m.sys })), reference, `${c.label} agrees on the membership events`);
    t.ok(cPhone.sdk.cursor(conv) === 5, 'carol holds the conversation up to seq 5');
    const cSeqs = cPhone.messages(conv).map((m) => m.seq);
    t.equal(cSeqs[0], 4, 'from her add event (her join floor): nothing before it reached her');
    t.ok(cSeqs.every((s, i) => i === 0 || s > cSeqs[i - 1]!), `carol in order: ${compact(cSeqs)}`);

    // Receipts: the SDKs dack what they hold; reads go out through markRead.
    // "All" receipts go to the authors of what they newly cover: seq 5 is carol's.
    await waitUntil(() => cPhone.receipts().some((r) => r.all === true && r.kind === 'delivered' && r.seq >= 5), 'delivered to all', describe);
    for (const c of all) c.sdk.markRead(conv, 5);
    await waitUntil(() => aPhone.receipts().some((r) => r.all === true && r.kind === 'read' && r.seq === 5), 'read by all', describe);
    const state = await bPhone.sdk.receiptsState(conv, 5);
    t.same({ delivered: state.delivered, read: state.read, deliveredAll: state.deliveredAll, readAll: state.readAll }, { delivered: [alice, bob, carol], read: [alice, bob, carol], deliveredAll: 5, readAll: 5 });
    t.notOk(aPhone.receipts().some((r) => r.conv === conv && r.user !== '*' && r.user !== alice), 'no per-member receipts of others in a group');

    const page1 = await cPhone.sdk.members(conv, { limit: 2 });
    const page2 = await cPhone.sdk.members(conv, { limit: 2, after: page1.next! });
    t.same([...page1.members, ...page2.members].map((m) => [m.user, m.role]), [[alice, 'owner'], [bob, 'member'], [carol, 'member']]);
    t.equal(page2.next, null);

    // Removal: bob learns it, then is refused.
    const removed = await aPhone.sdk.removeMember(conv, bob);
    await waitUntil(() => sysOf(bPhone, conv).some((m) => m.seq === removed.seq), 'bob gets the remove event', describe);
    const refusal = await bPhone.sdk.send({ conv }, new TextEncoder().encode('?')).catch((e: unknown) => e);
    t.ok(refusal instanceof ClientError && refusal.code === 'not_member', 'bob can no longer send');
    const hist = await bPhone.sdk.history(conv).catch((e: unknown) => e);
    t.ok(hist instanceof ClientError && hist.code === 'not_member', 'nor read history');
    const forbidden = await cPhone.sdk.removeMember(conv, alice).catch((e: unknown) => e);
    t.ok(forbidden instanceof ClientError && forbidden.code === 'forbidden', 'a member cannot remove the owner');
    await aPhone.send({ conv }, 'after bob');
    await waitUntil(() => cPhone.sdk.cursor(conv) === removed.seq + 1, 'carol gets the next message', describe);
    t.notOk(bPhone.messages(conv).some((m) => m.seq === removed.seq + 1), 'bob does not');
  });

  t.test(`${engine.name}: a member removed while offline learns it through sync, then the group drops out; re-added, it resumes at the new add`, async (t) => {
    const n = await startE2eNode(t, engine);
    const [alice, bob] = [n.user('alice'), n.user('bob')];
    const aPhone = n.client(alice, 'phone');
    let bPhone = n.client(bob, 'phone');
    const describe = (): string => describeAll([aPhone, bPhone])();
    await Promise.all([aPhone.connect(), bPhone.connect()]);
    const { conv } = await aPhone.sdk.createGroup({ name: 'Club', members: [bob], cmid: 'club' });
    await aPhone.send({ conv }, 'one');
    await waitUntil(() => bPhone.sdk.cursor(conv) === 2, 'bob holds seq 2', describe);
    // Bob's app goes away, keeping its cursors (ClientOptions.cursors).
    const kept = bPhone.sdk.cursors();
    bPhone.close();
    await aPhone.send({ conv }, 'two (bob away)');
    const removed = await aPhone.sdk.removeMember(conv, bob);
    t.equal(removed.seq, 4);
    await aPhone.send({ conv }, 'three (bob out)');

    bPhone = n.client(bob, 'phone', { cursors: kept });
    const mark = bPhone.mark();
    await bPhone.connect();
    await bPhone.waitSynced(mark);
    t.same(bPhone.messages(conv).map((m) => m.seq), [3, 4], 'the entries up to its removal, nothing after');
    t.same(bPhone.messages(conv).at(-1)!.sys, { op: 'remove', by: alice, users: [bob] }, 'the last is its remove event');
    const synced = bPhone.synced(mark).at(-1)!;
    t.same(synced.left, { [conv]: 4 }, 'synced tells the departure');
    t.equal(bPhone.sdk.cursor(conv), 4);

    // Caught up to its removal: the next catch-up no longer lists the group.
    const later = n.client(bob, 'phone', { cursors: bPhone.sdk.cursors() });
    bPhone.close();
    bPhone = later;
    const mark2 = bPhone.mark();
    await bPhone.connect();
    await bPhone.waitSynced(mark2);
    const again = bPhone.synced(mark2).at(-1)!;
    t.notOk(conv in again.heads, 'absent from heads');
    t.same(again.left, {});

    // Added again: the add event arrives live above the device's cursor (4); the SDK's gap repair
    // learns from history that the group starts for bob at the add (its new floor), no gap error.
    const readded = await aPhone.sdk.addMembers(conv, [bob]);
    t.equal(readded.seq, 6);
    await aPhone.send({ conv }, 'welcome back');
    await waitUntil(() => bPhone.sdk.cursor(conv) === 7, 'bob holds the group again up to seq 7', describe);
    t.same(bPhone.messages(conv).map((m) => m.seq), [6, 7], 'from the re-add, never seq 5');
    const page = await bPhone.sdk.history(conv);
    t.same(page.messages.map((m) => m.seq), [7, 6], 'history stops at the re-add');
    t.same([page.next, page.from], [null, 6], 'and says so');
  });

  t.test(`${engine.name}: a channel through the SDK: a subscriber joins and gets the posts; subscribers cannot post`, async (t) => {
    const n = await startE2eNode(t, engine);
    const [alice, bob] = [n.user('alice'), n.user('bob')];
    const aPhone = n.client(alice, 'phone');
    const bPhone = n.client(bob, 'phone');
    const describe = describeAll([aPhone, bPhone]);
    await Promise.all([aPhone.connect(), bPhone.connect()]);
    const { conv } = await aPhone.sdk.createChannel({ name: 'News', cmid: 'news' });
    t.match(conv, /^c:/);
    t.same(await bPhone.sdk.join(conv), { conv, seq: 0 }, 'joining writes no event');
    await aPhone.send({ conv }, 'post 1');
    await aPhone.send({ conv }, 'post 2');
    // Live (topic) or by sync: the subscriber ends up holding both posts.
    await waitUntil(
      async () => {
        if (bPhone.sdk.cursor(conv) !== 3) await bPhone.sdk.history(conv).catch(() => undefined);
        return bPhone.sdk.cursor(conv) === 3;
      },
      'the subscriber holds the posts',
      describe,
    );
    const refusal = await bPhone.sdk.send({ conv }, new TextEncoder().encode('me too')).catch((e: unknown) => e);
    t.ok(refusal instanceof ClientError && refusal.code === 'forbidden', 'a subscriber cannot post');
    // The subscriber's dacks of the followed channel are stored by its own shard (not through the
    // channel's actor): a fresh client of the same device (it replaces bPhone), with no cursors of
    // its own, syncs from the stored cursor and gets none of the posts again.
    let last = bPhone;
    await waitUntil(
      async () => {
        last.close();
        last = n.client(bob, 'phone');
        const mark = last.mark();
        await last.connect();
        await last.waitSynced(mark);
        return last.messages(conv).length === 0;
      },
      'the stored delivered cursor of the channel covers the posts',
      describe,
    );
    t.pass('the channel dacks were stored');
    t.same(await last.sdk.leave(conv), { conv, seq: 0 });
  });
}
