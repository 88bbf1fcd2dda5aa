/**
 * Membership semantics in the actor layer (docs/PROTOCOL.md 3.7), on both store engines (embedded,
 * and scylla on the shared Cassandra): the join floor of groups (history, sync and live delivery
 * never give a member a seq below the event that last added it; a re-add moves the floor), a
 * removal learnt through sync by a device that was offline (entries up to and including its remove
 * or leave event, then the conversation drops out; dacks up to that seq accepted, nothing else),
 * channels without a floor, and avatars that must be uploaded media ids.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EmbeddedMediaIndex } from '../../src/media/embedded-media-index.js';
import { sendMediaRefs } from '../../src/media/send-refs.js';
import type { ClientFrame, HistoryPageFrame, SyncBatchFrame, SyncedFrame } from '../../src/protocol/client-frames.js';
import { bytes, createConv, devices, ENGINES, newCmid, ok, openWorld, outcome, req, requestId, settle, until, World, type Device, type Engine, type WorldExtra } from './actors-harness.js';

const WAIT_MS = 15_000;

async function sent(t: Test, d: Device, conv: string, body: string): Promise<number> {
  const a = await req(d, { t: 'send', conv, cmid: newCmid('m-'), body: bytes(body) });
  if (a.t !== 'sent') t.fail(`send answered ${JSON.stringify(a)}`);
  return a.t === 'sent' ? a.seq : -1;
}

/** A sync round: its batches for `conv` (seqs in order) and the `synced` answer. */
async function sync(d: Device, cursors?: Record<string, number>): Promise<{ synced: SyncedFrame; batches: (conv: string) => SyncBatchFrame[]; seqs: (conv: string) => number[] }> {
  const id = requestId();
  d.send({ t: 'sync', id, ...(cursors === undefined ? {} : { cursors }) } as ClientFrame);
  let synced: SyncedFrame | undefined;
  await until(() => (synced = d.of('synced').find((f) => f.id === id)) !== undefined, `synced ${id}`, WAIT_MS);
  const batches = (conv: string): SyncBatchFrame[] => d.of('sync.batch').filter((b) => b.id === id && b.conv === conv);
  return { synced: synced!, batches, seqs: (conv) => batches(conv).flatMap((b) => b.msgs.map((m) => m.seq)) };
}

async function history(d: Device, conv: string, limit: number, before?: number): Promise<HistoryPageFrame> {
  const a = await req(d, { t: 'history', conv, limit, ...(before === undefined ? {} : { before }) });
  if (a.t !== 'history.page') throw new Error(`history answered ${JSON.stringify(a)}`);
  return a;
}

const world = (t: Test, engine: Engine, extra: WorldExtra = {}): Promise<World> => openWorld(t, { engine, keyspace: 'actors_membership', extra });

for (const engine of ENGINES)
  t.test(`${engine}: a member added later sees nothing below its add event: live, history and sync; a re-add moves the floor`, async (t) => {
    const w = await world(t, engine);
    const d = devices(w, ['olga', 'bob', 'carol']);
    await settle();
    const conv = await createConv(t, d.olga!, 'group', ['bob']);
    for (const b of ['one', 'two', 'three']) await sent(t, d.olga!, conv, b);
    const added = await ok(t, d.olga!, { t: 'member.add', conv, users: ['carol'] });
    t.equal(added, 5);
    const after = await sent(t, d.bob!, conv, 'welcome');
    await until(() => d.carol!.msgs(conv).some((m) => m.seq === after), 'carol gets the message after her add', WAIT_MS);
    await settle();
    t.same(d.carol!.msgs(conv).map((m) => m.seq), [added, after], 'live: only her add event and what follows');

    // History: newest first, cut at the floor, which ends the history (next null, from).
    const full = await history(d.carol!, conv, 50);
    t.same(full.msgs.map((m) => m.seq), [after, added]);
    t.same([full.next, full.expired, full.from], [null, false, added], 'the page ends at the floor');
    const first = await history(d.carol!, conv, 1);
    t.same(first.msgs.map((m) => m.seq), [after]);
    t.equal(first.next, after, 'a page above the floor pages on as usual');
    t.equal(first.from, undefined);
    const second = await history(d.carol!, conv, 1, first.next!);
    t.same([second.msgs.map((m) => m.seq), second.next, second.from], [[added], null, added]);
    const below = await history(d.carol!, conv, 10, added);
    t.same([below.msgs.length, below.next, below.expired, below.from], [0, null, false, added], 'before the floor: an empty last page');
    const bobs = await history(d.bob!, conv, 50);
    t.same(bobs.msgs.map((m) => m.seq), [6, 5, 4, 3, 2, 1], 'an initial member sees the whole log');
    t.equal(bobs.from, undefined, 'its floor is the create event (seq 1): no from');

    // Sync: from the stored cursor (none), or a cursor below the floor: starts at the floor.
    for (const cursors of [undefined, { [conv]: 2 }]) {
      const r = await sync(d.carol!, cursors);
      t.same(r.seqs(conv), [added, after], `sync ${JSON.stringify(cursors ?? {})} starts at the floor`);
      t.equal(r.batches(conv)[0]!.from, added, 'the first batch says where the floor is');
      t.equal(r.synced.from?.[conv], added, 'synced.from tells the floor');
      t.equal(r.synced.heads[conv], after);
      t.equal(r.synced.unread?.[conv], 2, 'unread counts only seqs from the floor');
    }
    const bobSync = await sync(d.bob!, { [conv]: 0 });
    t.same(bobSync.seqs(conv), [1, 2, 3, 4, 5, 6]);
    t.equal(bobSync.synced.from?.[conv], undefined);
    t.equal(bobSync.batches(conv)[0]!.from, undefined);

    // Removed, messages while out, then added again: the floor moves to the new add event.
    const removed = await ok(t, d.olga!, { t: 'member.remove', conv, user: 'carol' });
    const missed = await sent(t, d.olga!, conv, 'carol is out');
    const readded = await ok(t, d.olga!, { t: 'member.add', conv, users: ['carol'] });
    const back = await sent(t, d.olga!, conv, 'carol is back');
    t.same([removed, missed, readded, back], [7, 8, 9, 10]);
    await until(() => d.carol!.msgs(conv).some((m) => m.seq === back), 'carol gets messages again', WAIT_MS);
    await settle();
    t.notOk(d.carol!.msgs(conv).some((m) => m.seq === missed), 'never the message sent while she was out');
    const again = await sync(d.carol!, { [conv]: removed });
    t.same(again.seqs(conv), [readded, back], 'sync from her removal skips to the re-add');
    t.equal(again.batches(conv)[0]!.from, readded);
    t.equal(again.synced.from?.[conv], readded);
    const h = await history(d.carol!, conv, 50);
    t.same([h.msgs.map((m) => m.seq), h.from], [[back, readded], readded], 'history stops at the re-add');
    t.equal((await w.store.getMember(conv, 'carol'))?.fromSeq, readded, 'the member row holds the floor');
  });

for (const engine of ENGINES)
  t.test(`${engine}: a device offline during its removal gets the entries up to its remove event by sync, then no longer sees the conversation`, async (t) => {
    const w = await world(t, engine);
    const d = devices(w, ['olga', 'dave']);
    const laptop = w.device('dave', 'laptop', 1).connect();
    await settle();
    const conv = await createConv(t, d.olga!, 'group', ['dave']);
    const m2 = await sent(t, d.olga!, conv, 'before');
    await until(() => laptop.msgs(conv).some((m) => m.seq === m2), 'laptop gets seq 2', WAIT_MS);
    laptop.send({ t: 'dack', conv, seq: m2 });
    await w.advance(100);
    laptop.disconnect();
    const m3 = await sent(t, d.olga!, conv, 'while the laptop is away');
    const removed = await ok(t, d.olga!, { t: 'member.remove', conv, user: 'dave' });
    const m5 = await sent(t, d.olga!, conv, 'after dave left');
    t.same([m3, removed, m5], [3, 4, 5]);

    // The laptop comes back: the stored cursor (2) is below the removal.
    const dev = w.reconnect(laptop, 0).connect();
    await settle();
    const cursor = async (): Promise<number> => (await w.store.getDelivered('dave', 'laptop')).find((c) => c.conversationId === conv)?.seq ?? 0;
    for (const end = Date.now() + WAIT_MS; (await cursor()) !== m2 && Date.now() < end; ) await w.advance(100);
    t.equal(await cursor(), m2, 'the laptop stored its cursor before going away');
    const r = await sync(dev);
    t.same(r.seqs(conv), [m3, removed], 'the entries up to and including its removal, not beyond');
    const last = r.batches(conv).at(-1)!.msgs.at(-1)!;
    t.same(last.sys, { op: 'remove', by: 'olga', users: ['dave'] }, 'the last one is the remove event');
    t.equal(r.synced.heads[conv], removed, 'heads stops at the removal');
    t.equal(r.synced.left?.[conv], removed, 'synced.left tells it');
    t.equal(r.synced.more, false);

    // Its dack up to the removal is accepted (the cursor moves), beyond it is refused.
    dev.clear();
    dev.send({ t: 'dack', conv, seq: removed });
    await w.advance(100);
    for (const end = Date.now() + WAIT_MS; (await cursor()) !== removed && Date.now() < end; ) await w.advance(100);
    t.equal(await cursor(), removed, 'the cursor advanced to the removal');
    t.equal(dev.of('error').length, 0, 'no error for it');
    dev.send({ t: 'dack', conv, seq: m5 });
    await until(() => dev.of('error').length === 1, 'a dack beyond the removal is refused', WAIT_MS);
    t.equal(dev.of('error')[0]!.code, 'not_member');
    for (const frame of [
      { t: 'send', conv, cmid: 'd-late', body: bytes('late') },
      { t: 'history', conv, limit: 10 },
      { t: 'members', conv, limit: 10 },
      { t: 'receipts', conv, seq: 1 },
    ]) t.equal(await outcome(dev, frame), 'not_member', `${frame.t} refused`);

    // Its cursor is at the removal: the conversation is gone from sync (stored or sent cursor).
    const gone = await sync(dev);
    t.notOk(conv in gone.synced.heads, 'absent from heads');
    t.equal(gone.synced.left, undefined);
    t.same(gone.seqs(conv), []);
    const gone2 = await sync(dev, { [conv]: removed });
    t.notOk(conv in gone2.synced.heads);

    // A device that never held anything of it (no cursor) is not told about it.
    const tablet = w.device('dave', 'tablet', 1).connect();
    await settle();
    const fresh = await sync(tablet);
    t.notOk(conv in fresh.synced.heads, 'a device without a cursor for it gets nothing');

    // Added again: a normal member from the new add event.
    const readded = await ok(t, d.olga!, { t: 'member.add', conv, users: ['dave'] });
    const back = await sync(dev, { [conv]: removed });
    t.same(back.seqs(conv), [readded], 'sync resumes at the re-add (the floor), nothing in between');
    t.equal(back.synced.left, undefined);
    t.equal(back.synced.from?.[conv], readded);
    t.same(await w.store.listDepartures('dave'), [], 'the re-add cleared the departure');
  });

for (const engine of ENGINES)
  t.test(`${engine}: leaving from one device while another is offline: the other learns it through sync`, async (t) => {
    const w = await world(t, engine);
    const d = devices(w, ['olga', 'erin']);
    const tablet = w.device('erin', 'tablet', 1).connect();
    await settle();
    const conv = await createConv(t, d.olga!, 'group', ['erin']);
    await until(() => tablet.msgs(conv).length === 1, 'tablet gets the create', WAIT_MS);
    tablet.send({ t: 'dack', conv, seq: 1 });
    await w.advance(100);
    tablet.disconnect();
    const m2 = await sent(t, d.erin!, conv, 'bye all');
    const left = await ok(t, d.erin!, { t: 'conv.leave', conv });
    await sent(t, d.olga!, conv, 'bye erin');
    const dev = w.reconnect(tablet, 0).connect();
    await settle();
    const r = await sync(dev, { [conv]: 1 });
    t.same(r.seqs(conv), [m2, left]);
    t.same(r.batches(conv).at(-1)!.msgs.at(-1)!.sys, { op: 'leave', by: 'erin', users: ['erin'] });
    t.equal(r.synced.left?.[conv], left);
    const after = await sync(dev, { [conv]: left });
    t.notOk(conv in after.synced.heads);
    t.same(await w.store.listDepartures('erin'), [{ conversationId: conv, kind: 'group', fromSeq: 1, leftSeq: left }]);
  });

t.test('channels have no floor: a subscriber joining late reads the whole public history', async (t) => {
  const w = await world(t, 'embedded');
  const d = devices(w, ['olga', 'sub']);
  await settle();
  const conv = await createConv(t, d.olga!, 'channel', []);
  for (const b of ['p1', 'p2']) await sent(t, d.olga!, conv, b);
  t.equal(await ok(t, d.sub!, { t: 'conv.join', conv }), 0);
  const h = await history(d.sub!, conv, 50);
  t.same(h.msgs.map((m) => m.seq), [3, 2, 1]);
  t.equal(h.from, undefined);
  const r = await sync(d.sub!);
  t.same(r.seqs(conv), [1, 2, 3]);
  t.equal(r.synced.from, undefined);
});

t.test('an avatar must be an uploaded media id (invalid_field avatar); a set avatar is downloadable by members', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-membership-media-'));
  const index = new EmbeddedMediaIndex(join(dir, 'index'));
  await index.open();
  const A = 'a'.repeat(64);
  const B = 'b'.repeat(64);
  const GHOST = 'f'.repeat(64);
  for (const id of [A, B]) await index.putMeta({ id, type: 'image/png', size: 10, uploader: 'olga', createdAtMs: 1 });
  const w = await new World(2, {}, { media: sendMediaRefs(index) }).open();
  t.teardown(async () => {
    await w.close();
    await index.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const d = devices(w, ['olga', 'bob']);
  await settle();
  const refused = await req(d.olga!, { t: 'conv.create', cmid: 'av-1', kind: 'group', members: ['bob'], avatar: GHOST });
  t.same(refused.t === 'error' && [refused.code, refused.field], ['invalid_field', 'avatar'], 'unknown avatar at create');
  const conv = await createConv(t, d.olga!, 'group', ['bob'], { avatar: A, name: 'Pics' });
  t.equal(await index.isSentIn(conv, A), true, 'the create avatar is recorded: members may download it');
  const bad = await req(d.bob!, { t: 'conv.meta', conv, avatar: GHOST });
  t.same(bad.t === 'error' && [bad.code, bad.field], ['invalid_field', 'avatar'], 'unknown avatar at meta');
  t.equal((await w.store.getConversation(conv))!.meta.avatar, A, 'unchanged');
  t.equal(await ok(t, d.bob!, { t: 'conv.meta', conv, avatar: B }), 2, 'an uploaded one is accepted (seq 2: the refused one wrote nothing)');
  t.equal(await index.isSentIn(conv, B), true, 'and recorded');
  t.equal((await w.store.getConversation(conv))!.meta.avatar, B);
});

t.test('without media, an avatar is refused (invalid_field avatar)', async (t) => {
  const w = await world(t, 'embedded');
  const d = devices(w, ['olga']);
  await settle();
  const a = await req(d.olga!, { t: 'conv.create', cmid: 'nomedia', kind: 'group', members: [], avatar: 'a'.repeat(64) });
  t.same(a.t === 'error' && [a.code, a.field], ['invalid_field', 'avatar']);
});
