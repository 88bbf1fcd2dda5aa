/**
 * Store contract suite: one suite, every engine (embedded lmdb, scylla on real Cassandra 5).
 * Conversations are unique per test, so tests share one location per engine.
 */
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import type { Store } from '../../src/store/store.js';
import type { AppendResult, MessageDraft } from '../../src/store/types.js';
import { StoreError } from '../../src/store/errors.js';
import { registry } from '../../src/metrics/registry.js';
import { allFactories, TEST_BUCKET_SIZE, type StoreFactory } from './store-engines.js';

let n = 0;
const convId = (tag: string) => `c-${tag}-${++n}-${randomUUID().slice(0, 8)}`;

function draft(i: number, over: Partial<MessageDraft> = {}): MessageDraft {
  return {
    messageId: randomUUID(),
    senderUser: 'alice',
    senderDevice: 'alice-phone',
    clientMsgId: `cm-${i}-${randomUUID().slice(0, 6)}`,
    body: new Uint8Array([i & 255, 0, 255, (i >> 8) & 255]),
    sentAtMs: 1_700_000_000_000 + i,
    ...over,
  };
}

async function newConversation(store: Store, tag: string, kind: 'direct' | 'group' | 'channel' = 'group') {
  const id = convId(tag);
  await store.createConversation({
    id,
    kind,
    createdBy: 'alice',
    createdAtMs: Date.now(),
    meta: { name: tag },
    members: [
      { userId: 'alice', role: 'owner' },
      { userId: 'bob', role: 'member' },
    ],
  });
  return id;
}

async function readAll(store: Store, conv: string): Promise<{ seq: number; messageId: string }[]> {
  const out: { seq: number; messageId: string }[] = [];
  let after = 0;
  for (;;) {
    const page = await store.readForward(conv, after, 3);
    for (const m of page.messages) out.push({ seq: m.seq, messageId: m.messageId });
    if (page.next === null) return out;
    after = page.next;
  }
}

async function rejectsWithCode(t: Test, p: Promise<unknown>, code: string, msg: string) {
  try {
    await p;
    t.fail(`${msg}: expected ${code}, resolved instead`);
  } catch (err) {
    t.ok(err instanceof StoreError, `${msg}: is a StoreError`);
    t.equal((err as StoreError).code, code, msg);
  }
}

function contract(factory: StoreFactory) {
  t.test(`store contract: ${factory.label}`, async (t) => {
    const store = factory.create();
    await store.open();
    t.teardown(async () => {
      await store.close();
      factory.cleanup();
    });

    t.test('createConversation is idempotent on id and getConversation returns it', async (t) => {
      const id = convId('create');
      const first = await store.createConversation({
        id, kind: 'group', createdBy: 'alice', createdAtMs: 1000, meta: { name: 'one' },
        members: [{ userId: 'alice', role: 'owner' }],
      });
      t.equal(first.created, true);
      t.equal(first.conversation.kind, 'group');
      const second = await store.createConversation({
        id, kind: 'channel', createdBy: 'mallory', createdAtMs: 2000, meta: { name: 'two' },
        members: [{ userId: 'mallory', role: 'owner' }],
      });
      t.equal(second.created, false, 'second create reports created: false');
      t.equal(second.conversation.createdBy, 'alice', 'existing record returned unchanged');
      const got = await store.getConversation(id);
      t.match(got, { id, kind: 'group', createdBy: 'alice', createdAtMs: 1000, meta: { name: 'one' } });
      t.equal(await store.getMember(id, 'mallory'), null, 'second create added no member');
      t.equal(await store.getConversation(convId('missing')), null, 'unknown conversation is null');
      await store.updateConversationMeta(id, { name: 'renamed', avatar: 'm1' });
      t.same((await store.getConversation(id))?.meta, { name: 'renamed', avatar: 'm1' });
      await rejectsWithCode(t, store.updateConversationMeta(convId('nope'), {}), 'store.not_found', 'meta of unknown');
    });

    t.test('membership: roles, paging, removal and the user conversation list with heads', async (t) => {
      const id = await newConversation(store, 'members');
      const user = `u-${randomUUID().slice(0, 8)}`;
      t.equal(await store.getMember(id, user), null);
      await store.putMember(id, user, 'member', 5);
      t.match(await store.getMember(id, user), { conversationId: id, userId: user, role: 'member', joinedAtMs: 5 });
      await store.putMember(id, user, 'admin', 5);
      t.equal((await store.getMember(id, user))?.role, 'admin', 'putMember changes the role');
      for (let i = 0; i < 7; i++) await store.putMember(id, `m-${i}`, 'member', i);
      const all: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listMembers(id, { limit: 3, ...(after === undefined ? {} : { afterUserId: after }) });
        if (page.length === 0) break;
        t.ok(page.length <= 3, 'page respects limit');
        all.push(...page.map((m) => m.userId));
        after = page[page.length - 1]!.userId;
      }
      t.same(all, [...all].sort(), 'members come ordered by user id');
      t.equal(all.length, 2 + 7 + 1, 'all members seen exactly once across pages');

      const w = await store.openWriter(id, 1);
      await w.append([draft(1), draft(2)]);
      const list = await store.listUserConversations(user);
      t.match(list, [{ conversationId: id, kind: 'group', role: 'admin', head: 2 }]);
      await store.removeMember(id, user);
      t.equal(await store.getMember(id, user), null);
      t.same(await store.listUserConversations(user), [], 'removed from the user list');
      await store.removeMember(id, user); // no-op
      t.pass('removing a non-member is a no-op');
    });

    t.test('join floors and departures: recorded with the removal, cleared by the re-add', async (t) => {
      const id = await newConversation(store, 'floors');
      const user = `u-${randomUUID().slice(0, 8)}`;
      t.equal((await store.getMember(id, 'bob'))?.fromSeq, 0, 'no floor when none was given');
      await store.putMember(id, user, 'member', 5, 7);
      t.equal((await store.getMember(id, user))?.fromSeq, 7);
      t.equal((await store.listMembers(id)).find((m) => m.userId === user)?.fromSeq, 7);
      t.match(await store.listUserConversations(user), [{ conversationId: id, fromSeq: 7 }]);
      t.same(await store.listDepartures(user), []);
      await store.removeMember(id, user, { fromSeq: 7, leftSeq: 12 });
      t.equal(await store.getMember(id, user), null);
      t.same(await store.listUserConversations(user), []);
      t.same(await store.listDepartures(user), [{ conversationId: id, kind: 'group', fromSeq: 7, leftSeq: 12 }], 'the departure is kept');
      await store.removeMember(id, user);
      t.equal((await store.listDepartures(user)).length, 1, 'a removal without departure leaves it alone');
      await store.putMember(id, user, 'member', 6, 15);
      t.same(await store.listDepartures(user), [], 'added again: the departure is gone');
      t.match(await store.listUserConversations(user), [{ conversationId: id, fromSeq: 15 }], 'with the new floor');
    });

    t.test('append assigns dense seqs and reads back byte-exact', async (t) => {
      const id = await newConversation(store, 'append');
      const w = await store.openWriter(id, 1);
      t.equal(w.head, 0);
      const drafts = [draft(1), draft(2), draft(3)];
      const res = await w.append(drafts);
      t.same(res.map((r) => [r.seq, r.messageId, r.duplicate]), drafts.map((d, i) => [i + 1, d.messageId, false]));
      t.equal(w.head, 3);
      const res2 = await w.append([draft(4)]);
      t.equal(res2[0]!.seq, 4);
      t.equal(await store.head(id), 4);
      const page = await store.readForward(id, 0, 10);
      t.equal(page.messages.length, 4);
      t.equal(page.next, null);
      t.equal(page.head, 4);
      t.equal(page.expired, false);
      const m = page.messages[0]!;
      t.equal(m.conversationId, id);
      t.equal(m.seq, 1);
      t.equal(m.senderUser, 'alice');
      t.equal(m.senderDevice, 'alice-phone');
      t.equal(m.clientMsgId, drafts[0]!.clientMsgId);
      t.equal(m.sentAtMs, drafts[0]!.sentAtMs);
      t.same(Array.from(m.body), Array.from(drafts[0]!.body), 'body bytes round-trip');
      await rejectsWithCode(t, w.append([]), 'store.invalid', 'empty batch');
    });

    t.test('media ids are stored with a message and read back in order by both read directions', async (t) => {
      const id = await newConversation(store, 'media');
      const w = await store.openWriter(id, 1);
      const a = 'a'.repeat(64);
      const b = 'b'.repeat(64);
      const drafts = [draft(1, { media: [b, a] }), draft(2), draft(3, { media: [] }), draft(4, { media: [a] }), draft(5, { media: [a, b, a] })];
      await w.append(drafts);
      const forward = await store.readForward(id, 0, 10);
      t.same(forward.messages.map((m) => m.media), [[b, a], undefined, undefined, [a], [a, b, a]], 'forward: media in the sender\'s order; none and [] read back as absent');
      t.notOk('media' in forward.messages[1]!, 'a message without media has no media key');
      t.notOk('media' in forward.messages[2]!, 'an empty media list is stored as none');
      const backward = await store.readBackward(id, Number.MAX_SAFE_INTEGER, 10);
      t.same(backward.messages.map((m) => [m.seq, m.media]), [[5, [a, b, a]], [4, [a]], [3, undefined], [2, undefined], [1, [b, a]]], 'backward');
      // A replay keeps the stored message (and its media), whatever the replayed draft carries.
      const replay = await w.append([{ ...drafts[0]!, messageId: randomUUID(), media: [a] }]);
      t.equal(replay[0]!.duplicate, true);
      t.same((await store.readForward(id, 0, 1)).messages[0]!.media, [b, a], 'the replay did not change the stored media');
      // A fresh instance reads the same (the field is part of the stored record, not a cache).
      const other = factory.create();
      await other.open();
      t.teardown(() => other.close());
      t.same((await other.readForward(id, 0, 10)).messages.map((m) => m.media), [[b, a], undefined, undefined, [a], [a, b, a]], 'read back by a fresh instance');
      await rejectsWithCode(t, w.append([draft(6, { media: 'nope' as unknown as string[] })]), 'store.invalid', 'media must be an array');
      await rejectsWithCode(t, w.append([draft(7, { media: [''] })]), 'store.invalid', 'media ids must be non-empty strings');
    });

    t.test('a batch that spans several buckets commits every message in order', async (t) => {
      const id = await newConversation(store, 'span');
      const w = await store.openWriter(id, 1);
      const drafts = Array.from({ length: TEST_BUCKET_SIZE * 2 + 3 }, (_, i) => draft(i));
      const res = await w.append(drafts);
      t.same(res.map((r) => r.seq), drafts.map((_, i) => i + 1));
      const all = await readAll(store, id);
      t.same(all, drafts.map((d, i) => ({ seq: i + 1, messageId: d.messageId })));
    });

    t.test('an idempotent replay returns the original seq and message id', async (t) => {
      const id = await newConversation(store, 'idem');
      const w = await store.openWriter(id, 1);
      const a = draft(1);
      const [first] = await w.append([a, draft(2)]);
      const replay = await w.append([{ ...a, messageId: randomUUID(), body: new Uint8Array([9]) }, draft(3)]);
      t.same(replay[0], { seq: first!.seq, messageId: a.messageId, duplicate: true }, 'replay returns the original');
      t.equal(replay[1]!.seq, 3, 'the new draft in the same batch gets the next seq');
      const inBatch = draft(4);
      const twice = await w.append([inBatch, { ...inBatch, messageId: randomUUID() }]);
      t.equal(twice[0]!.seq, 4);
      t.same(twice[1], { seq: 4, messageId: inBatch.messageId, duplicate: true }, 'same key twice in one batch');
      const sameIdOtherDevice = await w.append([{ ...draft(5), clientMsgId: a.clientMsgId, senderDevice: 'alice-laptop' }]);
      t.equal(sameIdOtherDevice[0]!.duplicate, false, 'the key includes the sender device');
      t.equal(sameIdOtherDevice[0]!.seq, 5);
      t.equal((await readAll(store, id)).length, 5, 'replays wrote nothing');

      // A new activation (higher epoch) and a fresh store instance still dedupe.
      const other = factory.create();
      await other.open();
      try {
        const w2 = await other.openWriter(id, 2);
        const again = await w2.append([{ ...a, messageId: randomUUID() }]);
        t.same(again[0], { seq: 1, messageId: a.messageId, duplicate: true }, 'replay through a fresh instance');
      } finally {
        await other.close();
      }
    });

    t.test('a stale epoch is rejected and nothing acknowledged is lost', async (t) => {
      const id = await newConversation(store, 'fence');
      const w1 = await store.openWriter(id, 1);
      const acked: AppendResult[] = [];
      acked.push(...(await w1.append([draft(1), draft(2)])));
      const w2 = await store.openWriter(id, 2);
      t.equal(w2.head, 2, 'the new writer starts at the authoritative head');
      await rejectsWithCode(t, w1.append([draft(3)]), 'store.stale_epoch', 'old writer after a newer open');
      await rejectsWithCode(t, w1.append([draft(4)]), 'store.stale_epoch', 'the old writer stays closed');
      await rejectsWithCode(t, store.openWriter(id, 1), 'store.stale_epoch', 'opening with an older epoch');
      acked.push(...(await w2.append([draft(5)])));
      t.same((await readAll(store, id)).map((m) => m.messageId), acked.map((a) => a.messageId));
      const again = await store.openWriter(id, 2);
      t.equal(again.head, 3, 'reopening with the same epoch re-reads the head');
      await rejectsWithCode(t, store.openWriter(convId('ghost'), 1), 'store.not_found', 'unknown conversation');
    });

    t.test('two writers with different epochs racing: the stale one is rejected, no acked append is lost', async (t) => {
      const id = await newConversation(store, 'race');
      const acked = new Map<number, string>();
      const w1 = await store.openWriter(id, 1);
      let w1Error: unknown;
      let w1AfterFence = 0;
      let fenced = false;
      const loop1 = (async () => {
        for (let i = 0; i < 200; i++) {
          const startedAfterFence = fenced;
          try {
            const res = await w1.append([draft(i), draft(i + 1000)]);
            for (const r of res) acked.set(r.seq, r.messageId);
            if (startedAfterFence) w1AfterFence++;
          } catch (err) {
            // A batch spanning two buckets may commit its first part before being fenced: those
            // messages are acknowledged through `committed`.
            for (const r of (err as StoreError).committed ?? []) acked.set(r.seq, r.messageId);
            w1Error = err;
            return;
          }
        }
      })();
      await new Promise((r) => setTimeout(r, 30));
      const w2 = await store.openWriter(id, 2);
      fenced = true;
      const loop2 = (async () => {
        for (let i = 0; i < 10; i++) {
          const res = await w2.append([draft(i + 5000)]);
          for (const r of res) {
            t.notOk(acked.has(r.seq) && acked.get(r.seq) !== r.messageId, `seq ${r.seq} acked once`);
            acked.set(r.seq, r.messageId);
          }
        }
      })();
      await Promise.all([loop1, loop2]);
      t.ok(w1Error instanceof StoreError, 'the stale writer was rejected');
      t.ok(['store.stale_epoch', 'store.conflict'].includes((w1Error as StoreError).code), 'with a fencing code');
      t.equal(w1AfterFence, 0, 'no append started after the newer open succeeded for the stale writer');
      const stored = await readAll(store, id);
      t.same(stored.map((m) => m.seq), stored.map((_, i) => i + 1), 'seqs are dense');
      for (const [seq, messageId] of acked) {
        t.equal(stored[seq - 1]?.messageId, messageId, `acked seq ${seq} is stored as acked`);
      }
      t.equal(stored.length, acked.size, 'nothing stored that was not acked');
    });

    t.test('concurrent appends of many conversations: a fenced one fails alone, the others commit', async (t) => {
      // On embedded these land in shared engine-wide group commits; the guarantees stay per conversation.
      const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => newConversation(store, `many${i}`)));
      const writers = await Promise.all(ids.map((id) => store.openWriter(id, 1)));
      const before = await Promise.all(writers.map((w, i) => w.append([draft(i)])));
      const staleIdx = 3;
      const conflictIdx = 7;
      await store.openWriter(ids[staleIdx]!, 2); // fences writers[staleIdx]
      const twin = await store.openWriter(ids[conflictIdx]!, 1); // same epoch: a restarted activation
      await twin.append([draft(900)]); // takes seq 2 behind writers[conflictIdx]'s back
      const outcomes = await Promise.allSettled(writers.map((w, i) => w.append([draft(100 + i), draft(200 + i)])));
      for (let i = 0; i < ids.length; i++) {
        const o = outcomes[i]!;
        const stored = await readAll(store, ids[i]!);
        if (i === staleIdx || i === conflictIdx) {
          const code = i === staleIdx ? 'store.stale_epoch' : 'store.conflict';
          t.equal(o.status, 'rejected', `conversation ${i} is rejected`);
          t.equal(o.status === 'rejected' ? (o.reason as StoreError).code : null, code, `conversation ${i}: ${code}`);
          const expected = [before[i]![0]!.messageId, ...(i === conflictIdx ? [stored[1]?.messageId] : [])];
          t.same(stored.map((m) => m.messageId), expected, `conversation ${i}: nothing of the failed batch is visible`);
          await rejectsWithCode(t, writers[i]!.append([draft(300 + i)]), code, `conversation ${i}: the writer stays closed`);
        } else {
          t.equal(o.status, 'fulfilled', `conversation ${i} commits`);
          const res = o.status === 'fulfilled' ? o.value : [];
          t.same(res.map((r) => r.seq), [2, 3], `conversation ${i}: dense seqs after the first message`);
          t.same(stored.map((m) => m.messageId), [before[i]![0]!.messageId, ...res.map((r) => r.messageId)], `conversation ${i}: stored as acked`);
          t.equal(writers[i]!.head, 3, `conversation ${i}: writer head`);
        }
      }
      const heads = new Map((await store.listUserConversations('alice')).map((c) => [c.conversationId, c.head]));
      t.equal(heads.get(ids[0]!), 3, 'the user list shows the new head of a committed conversation');
      t.equal(heads.get(ids[staleIdx]!), 1, 'and the unchanged head of the fenced one');
    });

    t.test('pages forward and backward across bucket boundaries', async (t) => {
      const id = await newConversation(store, 'paging');
      const w = await store.openWriter(id, 1);
      const total = TEST_BUCKET_SIZE * 3 + 1;
      for (let i = 1; i <= total; i++) await w.append([draft(i)]);
      const fwd: number[] = [];
      let after = 0;
      let pages = 0;
      for (;;) {
        const page = await store.readForward(id, after, 3);
        pages++;
        fwd.push(...page.messages.map((m) => m.seq));
        if (page.next === null) break;
        t.equal(page.next, page.messages[page.messages.length - 1]!.seq, 'next is the last seq returned');
        after = page.next;
      }
      t.same(fwd, Array.from({ length: total }, (_, i) => i + 1));
      t.ok(pages >= Math.ceil(total / 3), 'several pages');
      const back: number[] = [];
      let before = total + 1;
      for (;;) {
        const page = await store.readBackward(id, before, 3);
        back.push(...page.messages.map((m) => m.seq));
        if (page.next === null) break;
        before = page.next;
      }
      t.same(back, Array.from({ length: total }, (_, i) => total - i));
      const mid = await store.readForward(id, TEST_BUCKET_SIZE - 1, 2);
      t.same(mid.messages.map((m) => m.seq), [TEST_BUCKET_SIZE, TEST_BUCKET_SIZE + 1], 'range straddling a boundary');
      const beyond = await store.readForward(id, total, 5);
      t.same(beyond.messages, []);
      t.equal(beyond.next, null);
      t.equal(beyond.head, total);
      const empty = await store.readForward(await newConversation(store, 'empty'), 0, 5);
      t.same([empty.messages.length, empty.next, empty.head, empty.retainedFrom], [0, null, 0, 1]);
    });

    t.test('retention trims whole old buckets and reports expired cursors authoritatively', async (t) => {
      const id = await newConversation(store, 'retention');
      const w = await store.openWriter(id, 1);
      const old = 1_000_000;
      const fresh = 9_000_000;
      // Buckets of 4: seqs 1-3 in bucket 0, 4-7 in bucket 1 (all old), 8-11 in bucket 2 (fresh from seq 9).
      const drafts = Array.from({ length: 11 }, (_, i) => draft(i, { sentAtMs: i + 1 >= 9 ? fresh : old }));
      await w.append(drafts);
      t.equal(await store.retainedFrom(id), 1);
      const from = await store.trimExpired(id, 5_000_000);
      t.equal(from, 2 * TEST_BUCKET_SIZE, 'retained from the first seq of the first kept bucket');
      t.equal(await store.retainedFrom(id), from);
      const page = await store.readForward(id, 0, 100);
      t.equal(page.expired, true, 'a cursor below the boundary is told it expired');
      t.equal(page.retainedFrom, from);
      t.equal(page.messages[0]?.seq, from, 'reading resumes at the boundary');
      t.equal(page.messages.length, 11 - from + 1);
      const ok = await store.readForward(id, from - 1, 100);
      t.equal(ok.expired, false, 'a cursor at the boundary is not expired');
      const back = await store.readBackward(id, 12, 100);
      t.equal(back.messages[back.messages.length - 1]?.seq, from);
      t.equal(back.expired, true, 'paging backwards past the boundary says so');
      t.equal(await store.trimExpired(id, Number.MAX_SAFE_INTEGER), 2 * TEST_BUCKET_SIZE,
        'the bucket that holds the head is never trimmed');
      t.equal(await store.head(id), 11);
      await w.append([draft(99)]);
      t.equal(await store.head(id), 12, 'the writer continues after a trim');
    });

    t.test('delivered and read cursors only move forward, whatever the arrival order', async (t) => {
      const user = `cur-${randomUUID().slice(0, 8)}`;
      const c1 = convId('cur1');
      const c2 = convId('cur2');
      await store.advanceDelivered([
        { userId: user, deviceId: 'd1', conversationId: c1, seq: 5 },
        { userId: user, deviceId: 'd1', conversationId: c2, seq: 2 },
        { userId: user, deviceId: 'd2', conversationId: c1, seq: 1 },
      ]);
      await store.advanceDelivered([{ userId: user, deviceId: 'd1', conversationId: c1, seq: 3 }]);
      await store.advanceDelivered([
        { userId: user, deviceId: 'd1', conversationId: c2, seq: 9 },
        { userId: user, deviceId: 'd1', conversationId: c2, seq: 4 },
      ]);
      await Promise.all([7, 2, 6, 1].map((seq) => store.advanceDelivered([{ userId: user, deviceId: 'd2', conversationId: c1, seq }])));
      const sort = (xs: { conversationId: string; seq: number }[]) => [...xs].sort((a, b) => a.conversationId.localeCompare(b.conversationId));
      t.same(sort(await store.getDelivered(user, 'd1')), sort([{ conversationId: c1, seq: 5 }, { conversationId: c2, seq: 9 }]));
      t.same(await store.getDelivered(user, 'd2'), [{ conversationId: c1, seq: 7 }]);
      t.same(await store.getDelivered(user, 'none'), []);
      await store.advanceRead(user, c1, 4);
      await store.advanceRead(user, c1, 2);
      await store.advanceRead(user, c2, 1);
      t.same(sort(await store.getRead(user)), sort([{ conversationId: c1, seq: 4 }, { conversationId: c2, seq: 1 }]));
    });

    t.test('devices and push tokens', async (t) => {
      const user = `dev-${randomUUID().slice(0, 8)}`;
      await store.putDevice({ userId: user, deviceId: 'phone', platform: 'ios', createdAtMs: 10 });
      await store.putDevice({ userId: user, deviceId: 'web', platform: 'web', createdAtMs: 11 });
      await store.setPushToken(user, 'phone', 'apns', 'tok-1');
      await store.putDevice({ userId: user, deviceId: 'phone', platform: 'ios', createdAtMs: 10 });
      const devices = (await store.listDevices(user)).sort((a, b) => a.deviceId.localeCompare(b.deviceId));
      t.match(devices, [
        { userId: user, deviceId: 'phone', platform: 'ios', pushProvider: 'apns', pushToken: 'tok-1', createdAtMs: 10 },
        { userId: user, deviceId: 'web', platform: 'web', pushProvider: null, pushToken: null },
      ], 'putDevice keeps an existing token');
      await store.setPushToken(user, 'phone', null, null);
      t.equal((await store.listDevices(user)).find((d) => d.deviceId === 'phone')?.pushToken, null, 'token cleared');
      await rejectsWithCode(t, store.setPushToken(user, 'ghost', 'fcm', 'x'), 'store.not_found', 'token for an unknown device');
      await store.removeDevice(user, 'web');
      t.same((await store.listDevices(user)).map((d) => d.deviceId), ['phone']);
    });

    t.test('data written by one instance is read back by a fresh instance, and a writer resumes', async (t) => {
      const id = await newConversation(store, 'fresh');
      const w = await store.openWriter(id, 3);
      const res = await w.append([draft(1), draft(2), draft(3), draft(4), draft(5)]);
      await store.advanceRead('bob', id, 2);
      const other = factory.create();
      await other.open();
      try {
        t.match(await other.getConversation(id), { id, kind: 'group' });
        t.same((await readAll(other, id)).map((m) => m.messageId), res.map((r) => r.messageId));
        t.equal(await other.head(id), 5);
        t.same((await other.getRead('bob')).filter((c) => c.conversationId === id), [{ conversationId: id, seq: 2 }]);
        const w2 = await other.openWriter(id, 3);
        t.equal(w2.head, 5);
        t.equal((await w2.append([draft(6)]))[0]!.seq, 6);
      } finally {
        await other.close();
      }
    });

    t.test('store operations are measured in ticks_store_op_duration_seconds', async (t) => {
      const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'ticks_store_op_duration_seconds');
      t.ok(metric, 'metric registered');
      const labels = (metric?.values ?? []).map((v) => v.labels);
      t.ok(labels.some((l) => l.engine === factory.name && l.op === 'append' && l.result === 'ok'), 'append ok recorded');
      t.ok(labels.some((l) => l.engine === factory.name && l.result === 'store.stale_epoch'), 'errors recorded by code');
    });
  });

  t.test(`a closed store rejects with store.unavailable: ${factory.label}`, async (t) => {
    const s = factory.create();
    await s.open();
    await s.close();
    await s.close();
    t.pass('close is idempotent');
    await rejectsWithCode(t, s.getConversation('x'), 'store.unavailable', 'read after close');
  });
}

for (const factory of allFactories('contract')) contract(factory);
