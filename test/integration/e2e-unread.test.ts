/**
 * Unread badges end to end on a real node (both engines): `synced.unread` (conv -> head minus the
 * user's read cursor, only conversations above 0) and `synced.unreadTotal`, and the push badge
 * (src/jobs/push/badge.ts) giving the same total from the same function (src/store/unread.ts).
 *
 * Decision checked here: counts come from seqs alone, so the user's own messages after their read
 * cursor count too (as in the push badge); a client keeps them out by reading past its own sends.
 */
import t from 'tap';
import { unreadCount } from '../../src/jobs/push/badge.js';
import type { ServerFrame, SyncedFrame } from '../../src/protocol/client-frames.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { createStore } from '../../src/store/create-store.js';
import { RawClient } from '../support/cluster-raw-client.js';
import { utf8, waitUntil } from '../support/e2e-client.js';
import { E2E_SECRET, e2eEngines, startE2eNode } from '../support/e2e-node.js';

for (const engine of e2eEngines('e2e_unread')) {
  t.test(`${engine.name}: synced carries unread badges per conversation and in total; the push badge agrees`, async (t) => {
    const n = await startE2eNode(t, engine);
    const store = createStore(n.config.store);
    await store.open();
    t.teardown(() => store.close());
    const alice = n.user('alice');
    const bob = n.user('bob');
    const carol = n.user('carol');
    const raw = async (user: string, device = 'phone'): Promise<RawClient> => {
      const c = new RawClient({ url: n.url, id: 'unread-node' }, user, device, E2E_SECRET);
      t.teardown(() => c.close());
      await c.open();
      return c;
    };
    let nextId = 10;
    const send = async (c: RawClient, to: string, body: string): Promise<number> => {
      const id = nextId++;
      c.send({ t: 'send', id, to, cmid: `cm-${id}`, body: utf8(body) });
      const answer = (): ServerFrame | undefined => c.frames.find((f) => (f.t === 'sent' || f.t === 'error') && f.id === id);
      await waitUntil(() => answer() !== undefined, `answer to send ${id}`);
      const a = answer()!;
      if (a.t !== 'sent') throw new Error(`send refused: ${JSON.stringify(a)}`);
      return a.seq;
    };
    const sync = async (c: RawClient): Promise<SyncedFrame> => {
      const id = nextId++;
      c.send({ t: 'sync', id });
      const done = (): ServerFrame | undefined => c.frames.find((f) => (f.t === 'synced' || f.t === 'error') && f.id === id);
      await waitUntil(() => done() !== undefined, `synced ${id}`);
      const f = done()!;
      if (f.t !== 'synced') throw new Error(`sync failed: ${JSON.stringify(f)}`);
      return f;
    };

    const a = await raw(alice);
    const c = await raw(carol);
    const ab = directConversationId(alice, bob);
    const cb = directConversationId(carol, bob);
    for (let i = 1; i <= 3; i++) await send(a, bob, `a${i}`);
    for (let i = 1; i <= 2; i++) await send(c, bob, `c${i}`);

    // bob comes online: his first sync reports both conversations unread.
    const b = await raw(bob);
    const first = b.frames.find((f) => f.t === 'synced') as SyncedFrame;
    t.same(first.unread, { [ab]: 3, [cb]: 2 }, 'per conversation: head minus read cursor');
    t.equal(first.unreadTotal, 5);
    t.equal(await unreadCount(store, bob), 5, 'the push badge is the same total');

    // bob reads alice's conversation up to 2: one left there.
    b.send({ t: 'read', conv: ab, seq: 2 });
    await waitUntil(async () => (await store.getRead(bob)).some((r) => r.conversationId === ab && r.seq === 2), 'the read cursor is stored');
    const second = await sync(b);
    t.same(second.unread, { [ab]: 1, [cb]: 2 });
    t.equal(second.unreadTotal, 3);
    t.equal(await unreadCount(store, bob), 3);

    // bob replies to carol and reads her conversation through his reply: nothing unread there, and
    // the conversation is left out of `unread` (only entries above 0).
    const reply = await send(b, carol, 'hi carol');
    t.equal(reply, 3);
    b.send({ t: 'read', conv: cb, seq: reply });
    b.send({ t: 'read', conv: ab, seq: 3 });
    await waitUntil(async () => (await store.getRead(bob)).filter((r) => (r.conversationId === cb && r.seq === 3) || (r.conversationId === ab && r.seq === 3)).length === 2, 'both read cursors stored');
    const third = await sync(b);
    t.same(third.unread, {}, 'everything read: no entries');
    t.equal(third.unreadTotal, 0);
    t.equal(await unreadCount(store, bob), 0);

    // carol never read her conversation: bob's reply and her own two messages count (seqs only).
    const carolSync = await sync(c);
    t.same(carolSync.unread, { [cb]: 3 }, "the sender's own messages after its read cursor count too (documented)");
    t.equal(carolSync.unreadTotal, 3);
    t.equal(await unreadCount(store, carol), 3);
  });
}
