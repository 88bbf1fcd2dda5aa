/**
 * Scenario 2, end to end through the SDK: a device that is offline while 50 messages are sent
 * catches up exactly when it reconnects (the missed ones, in order, no duplicates, then `synced`),
 * over several sync rounds; an SDK restarted with the cursors the app persisted resumes exactly
 * where it stopped; a brand-new device syncs the whole history. Embedded store and Cassandra.
 */
import t, { type Test } from 'tap';
import { directConversationId } from '../../src/protocol/ids.js';
import { compact, describeAll, range, text, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

const MISSED = 50;
const SYNC_LIMIT = 20;

/** The messages of `conv` logged after `mark` and before the first `synced` after it, and that event. */
function catchUp(c: E2eClient, conv: string, mark: number) {
  const after = c.since(mark);
  const end = after.findIndex((l) => l.k === 'synced');
  const before = after.slice(0, end === -1 ? after.length : end);
  const synced = end === -1 ? undefined : after[end];
  return {
    seqs: before.flatMap((l) => (l.k === 'message' && l.m.conv === conv ? [l.m.seq] : [])),
    sources: new Set(before.flatMap((l) => (l.k === 'message' ? [l.m.source] : []))),
    synced: synced?.k === 'synced' ? synced.e : undefined,
  };
}

function noDuplicateIds(t: Test, c: E2eClient, conv: string): void {
  const mids = c.messages(conv).map((m) => m.mid);
  t.equal(new Set(mids).size, mids.length, `${c.label} got each message id once (${mids.length} messages)`);
}

for (const engine of e2eEngines('e2e_catchup')) {
  t.test(`${engine.name}: an offline device catches up exactly on reconnect, and a restarted SDK resumes from persisted cursors`, async (t) => {
    const n = await startE2eNode(t, engine);
    const alice = n.user('alice');
    const bob = n.user('bob');
    const conv = directConversationId(alice, bob);
    const aPhone = n.client(alice, 'phone');
    const bPhone = n.client(bob, 'phone', { syncLimit: SYNC_LIMIT });
    const describe = describeAll([aPhone, bPhone]);
    await Promise.all([aPhone.connect(), bPhone.connect()]);

    for (let i = 1; i <= 3; i++) await aPhone.send({ to: bob }, `online ${i}`);
    await waitUntil(() => bPhone.sdk.cursor(conv) === 3, 'bob/phone to hold seqs 1..3 live', describe);

    // Offline: the connection drops and new ones fail until the test says otherwise.
    bPhone.net.offline = true;
    bPhone.net.cut();
    await waitUntil(() => bPhone.sdk.state === 'reconnecting', 'bob/phone to notice it is offline', describe);
    const offlineMark = bPhone.mark();
    for (let i = 0; i < MISSED; i += 10) {
      await Promise.all(range(i + 1, i + 10).map((k) => aPhone.send({ to: bob }, `missed ${k}`)));
    }
    const missedSeqs = aPhone.outgoing.filter((o) => o.body.startsWith('missed')).map((o) => o.result!.seq).sort((a, b) => a - b);
    t.same(missedSeqs, range(4, 3 + MISSED), `the ${MISSED} messages sent meanwhile are seqs 4..${3 + MISSED}`);
    t.same(bPhone.messages(conv, offlineMark), [], 'nothing reached the offline device');

    bPhone.net.offline = false;
    await bPhone.waitSynced(offlineMark);
    const back = catchUp(bPhone, conv, offlineMark);
    t.same(back.seqs, range(4, 3 + MISSED), `before synced: exactly the missed seqs, in order (got ${compact(back.seqs)})`);
    t.same([...back.sources], ['sync'], 'all of them came from sync');
    t.equal(back.synced?.heads[conv], 3 + MISSED, 'synced reports the head');
    t.equal(back.synced?.rounds, Math.ceil(MISSED / SYNC_LIMIT), `it took ${Math.ceil(MISSED / SYNC_LIMIT)} rounds of at most ${SYNC_LIMIT}`);
    t.same(
      bPhone.messages(conv, offlineMark).map((m) => text(m.body)),
      aPhone.outgoing.filter((o) => o.body.startsWith('missed')).sort((x, y) => x.result!.seq - y.result!.seq).map((o) => o.body),
      'each seq carries the body that was sent with it',
    );

    // Live again: the next message arrives live, and nothing of the catch-up is repeated.
    await aPhone.send({ to: bob }, 'live again');
    const liveSeq = 4 + MISSED;
    await waitUntil(() => bPhone.sdk.cursor(conv) === liveSeq, `bob/phone to get seq ${liveSeq} live`, describe);
    t.same(bPhone.messages(conv, offlineMark).map((m) => m.seq), range(4, liveSeq), 'since going offline: 4..head, each once');
    t.equal(bPhone.messages(conv).at(-1)?.source, 'live', 'the new one came live');
    noDuplicateIds(t, bPhone, conv);

    // The app persists the cursors and the SDK stops; more messages are sent meanwhile.
    const persisted = bPhone.sdk.cursors();
    t.same(persisted, { [conv]: liveSeq }, 'the cursors to persist');
    bPhone.close();
    await waitUntil(() => bPhone.sdk.state === 'closed', 'bob/phone SDK to close', describe);
    for (let k = 1; k <= 10; k++) await aPhone.send({ to: bob }, `while stopped ${k}`);
    const head = liveSeq + 10;

    const restarted = n.client(bob, 'phone', { cursors: persisted, syncLimit: SYNC_LIMIT });
    await restarted.connect();
    const resumed = catchUp(restarted, conv, 0);
    t.same(resumed.seqs, range(liveSeq + 1, head), `the restarted SDK got exactly ${liveSeq + 1}..${head} before synced (got ${compact(resumed.seqs)})`);
    t.equal(resumed.synced?.heads[conv], head);
    t.same(restarted.messages(conv).map((m) => text(m.body)), range(1, 10).map((k) => `while stopped ${k}`), 'in the order they were sent');

    // A brand-new device of bob has no cursor: it gets the whole history, in order.
    const tablet = n.client(bob, 'tablet', { syncLimit: SYNC_LIMIT });
    await tablet.connect();
    const full = catchUp(tablet, conv, 0);
    t.same(full.seqs, range(1, head), `a new device syncs 1..${head} (got ${compact(full.seqs)})`);
    noDuplicateIds(t, tablet, conv);

    // And everyone agrees on every seq.
    await waitUntil(() => restarted.sdk.cursor(conv) === head && tablet.sdk.cursor(conv) === head, 'both devices at the head', describeAll([restarted, tablet]));
    const mids = new Map(aPhone.outgoing.map((o) => [o.result!.seq, o.result!.mid]));
    const wrong = tablet.messages(conv).filter((m) => mids.get(m.seq) !== m.mid).map((m) => m.seq);
    t.same(wrong, [], 'the tablet has the same message id at every seq as the sender was told');
  });
}
