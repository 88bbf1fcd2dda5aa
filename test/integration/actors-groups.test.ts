/**
 * Groups and channels in the actor layer (real embedded store): the permission matrices of
 * docs/PROTOCOL.md 3.7 with the exact error codes, idempotent creation, membership events in the
 * log and on every device, removed members refused, group fan-out with the "all" receipts,
 * membership races, the last owner's successor, group_full, channel fan-out through ChannelFanout,
 * and the repair of member rows after a failure between the append and the row writes.
 */
import t, { type Test } from 'tap';
import { createdConversationId } from '../../src/actors/conversation-actor.js';
import { decodeSys, PENDING_KEY, SYS_DEVICE, applySys, type MemberState } from '../../src/actors/conversation-ops.js';
import type { ChannelFanout } from '../../src/actors/channel-fanout.js';
import type { DeliveredEntry } from '../../src/actors/messages.js';
import type { MsgFrame, ServerFrame } from '../../src/protocol/client-frames.js';
import type { SysEvent } from '../../src/protocol/client-conv-frames.js';
import { StoreError } from '../../src/store/errors.js';
import { bytes, createConv, devices, ENGINES, newCmid, ok, openWorld, outcome, req, settle, until, type Device, type Engine, type World, type WorldExtra } from './actors-harness.js';

/** createConv, and the id is the one derived from (user, kind, cmid). */
async function create(t: Test, d: Device, kind: 'group' | 'channel', members: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const cmid = newCmid('create-');
  const conv = await createConv(t, d, kind, members, extra, cmid);
  t.equal(conv, createdConversationId(d.ref.user, kind, cmid), 'the id is derived from (user, kind, cmid)');
  return conv;
}

/** The events of the log, replayed: who is a member with which role after the last one. */
async function replay(w: World, conv: string): Promise<{ events: { seq: number; e: SysEvent }[]; members: Map<string, MemberState> }> {
  const events: { seq: number; e: SysEvent }[] = [];
  const members = new Map<string, MemberState>();
  for (let after = 0; ; ) {
    const page = await w.store.readForward(conv, after, 200);
    for (const m of page.messages) {
      if (m.senderDevice !== SYS_DEVICE) continue;
      const e = decodeSys(m.body)!;
      events.push({ seq: m.seq, e });
      applySys(members, e, m.sentAtMs, m.seq);
    }
    if (page.messages.length === 0 || page.next === null) break;
    after = page.messages.at(-1)!.seq;
  }
  return { events, members };
}

async function rows(w: World, conv: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of await w.store.listMembers(conv, { limit: 10_000 })) out[m.userId] = m.role;
  return out;
}

function roles(members: Map<string, MemberState>): Record<string, string> {
  return Object.fromEntries([...members].map(([u, s]) => [u, s.role]).sort());
}

function sysMsgs(d: Device, conv: string): MsgFrame[] {
  return d.msgs(conv).filter((m) => m.sys !== undefined);
}

const world = (t: Test, shards = 2, extra: WorldExtra = {}, engine: Engine = 'embedded'): Promise<World> => openWorld(t, { engine, keyspace: 'actors_groups', shards, extra });

for (const engine of ENGINES)
  t.test(`${engine}: create is idempotent, writes the create event at seq 1 and reaches every member device`, async (t) => {
  const w = await world(t, 2, {}, engine);
  const d = devices(w, ['olga', 'bob', 'carol']);
  const laptop = w.device('olga', 'laptop', 1).connect();
  await settle();
  const cmid = 'same-cmid';
  // Two concurrent creates with the same cmid, then a retry after both answered.
  const [a, b] = await Promise.all([
    req(d.olga!, { t: 'conv.create', cmid, kind: 'group', name: 'Team', members: ['bob', 'carol', 'bob', 'olga'] }),
    req(d.olga!, { t: 'conv.create', cmid, kind: 'group', name: 'Team', members: ['bob', 'carol'] }),
  ]);
  const c = await req(d.olga!, { t: 'conv.create', cmid, kind: 'group', name: 'Team', members: ['bob', 'carol'] });
  const conv = createdConversationId('olga', 'group', cmid);
  for (const x of [a, b, c]) t.same(x, { t: 'conv.ok', id: (x as { id: number }).id, conv, seq: 1 });
  const { events, members } = await replay(w, conv);
  t.equal(events.length, 1, 'one create event in the log');
  t.same(events[0]!.e, { op: 'create', by: 'olga', kind: 'group', users: ['bob', 'carol'], name: 'Team' });
  t.same(roles(members), { bob: 'member', carol: 'member', olga: 'owner' });
  t.same(await rows(w, conv), { bob: 'member', carol: 'member', olga: 'owner' }, 'member rows follow the log');
  const meta = (await w.store.getConversation(conv))!.meta;
  t.same(meta, { name: 'Team' }, 'name in the meta, no pending marker left');
  for (const dev of [d.olga!, laptop, d.bob!, d.carol!]) {
    await until(() => sysMsgs(dev, conv).length === 1, `${dev.ref.user}/${dev.ref.device} gets the create event`);
    const m = sysMsgs(dev, conv)[0]!;
    t.same({ seq: m.seq, from: m.from, fdev: m.fdev, body: m.body.length, kind: m.kind, cmid: m.cmid }, { seq: 1, from: 'olga', fdev: '~', body: 0, kind: 'group', cmid: undefined });
  }
  const other = await create(t, d.olga!, 'group', []);
  t.not(other, conv, 'another cmid is another group');
  const channel = createdConversationId('olga', 'channel', cmid);
  t.not(channel, conv);
});

// ---- permission matrix: groups --------------------------------------------------------------------

interface Row {
  op: string;
  by: string;
  frame: (conv: string) => Record<string, unknown>;
  expect: string;
}

const G_USERS = ['olga', 'otto', 'adam', 'alan', 'mia', 'max', 'ned'];

/** A group: owners olga and otto, admins adam and alan, members mia and max; ned is not a member. */
async function groupFixture(t: Test, d: Record<string, Device>, kind: 'group' | 'channel'): Promise<string> {
  const conv = await create(t, d.olga!, kind, kind === 'group' ? ['mia', 'max'] : []);
  await ok(t, d.olga!, { t: 'member.add', conv, users: ['otto', 'adam', 'alan'], role: 'admin' });
  await ok(t, d.olga!, { t: 'member.role', conv, user: 'otto', role: 'owner' });
  if (kind === 'channel') {
    for (const u of ['mia', 'max']) t.equal(await ok(t, d[u]!, { t: 'conv.join', conv }), 0, 'a join writes no event');
  }
  return conv;
}

function matrixRows(kind: 'group' | 'channel'): Row[] {
  const rows: Row[] = [];
  const add = (op: string, frame: Row['frame'], expect: Record<string, string>): void => {
    for (const [by, e] of Object.entries(expect)) rows.push({ op, by, frame, expect: e });
  };
  const ch = kind === 'channel';
  add('send', (conv) => ({ t: 'send', conv, cmid: newCmid('s'), body: bytes('hi') }), { olga: 'ok', adam: 'ok', mia: ch ? 'forbidden' : 'ok', ned: 'not_member' });
  add('member.add member', (conv) => ({ t: 'member.add', conv, users: ['zed'] }), { olga: 'ok', adam: 'ok', mia: 'forbidden', ned: 'not_member' });
  add('member.add admin', (conv) => ({ t: 'member.add', conv, users: ['zed'], role: 'admin' }), { olga: 'ok', adam: 'forbidden', mia: 'forbidden', ned: 'not_member' });
  add('member.remove member', (conv) => ({ t: 'member.remove', conv, user: 'max' }), { olga: 'ok', adam: 'ok', mia: 'forbidden', ned: 'not_member' });
  add('member.remove admin', (conv) => ({ t: 'member.remove', conv, user: 'alan' }), { olga: 'ok', adam: 'forbidden', mia: 'forbidden', ned: 'not_member' });
  add('member.remove owner', (conv) => ({ t: 'member.remove', conv, user: 'otto' }), { olga: 'forbidden', adam: 'forbidden', mia: 'forbidden', ned: 'not_member' });
  add('member.role', (conv) => ({ t: 'member.role', conv, user: 'max', role: 'admin' }), { olga: 'ok', adam: 'forbidden', mia: 'forbidden', ned: 'not_member' });
  add('conv.meta', (conv) => ({ t: 'conv.meta', conv, name: 'new name' }), { olga: 'ok', adam: 'ok', mia: ch ? 'forbidden' : 'ok', ned: 'not_member' });
  add('conv.leave', (conv) => ({ t: 'conv.leave', conv }), { olga: 'ok', adam: 'ok', mia: 'ok', ned: 'not_member' });
  add('history', (conv) => ({ t: 'history', conv, limit: 10 }), { olga: 'ok', adam: 'ok', mia: 'ok', ned: 'not_member' });
  add('members', (conv) => ({ t: 'members', conv, limit: 10 }), { olga: 'ok', adam: 'ok', mia: 'ok', ned: 'not_member' });
  add('receipts', (conv) => ({ t: 'receipts', conv, seq: 1 }), ch ? { olga: 'forbidden', mia: 'forbidden', ned: 'not_member' } : { olga: 'ok', adam: 'ok', mia: 'ok', ned: 'not_member' });
  add('conv.join', (conv) => ({ t: 'conv.join', conv }), ch ? { ned: 'ok', mia: 'ok' } : { ned: 'forbidden', mia: 'forbidden' });
  return rows;
}

for (const engine of ENGINES) for (const kind of ['group', 'channel'] as const) {
  t.test(`${engine}: permission matrix: ${kind}s (every row with its exact outcome)`, async (t) => {
    const w = await world(t, 2, {}, engine);
    const d = devices(w, G_USERS);
    await settle();
    const table = matrixRows(kind);
    for (const row of table) {
      // A fresh conversation per row: rows change membership.
      const conv = await groupFixture(t, d, kind);
      const before = await replay(w, conv);
      const got = await outcome(d[row.by]!, row.frame(conv));
      t.equal(got, row.expect, `${row.op} by ${row.by}`);
      const after = await replay(w, conv);
      if (got !== 'ok') t.same(roles(after.members), roles(before.members), `${row.op} by ${row.by}: a refusal changes nothing`);
      const stored = await rows(w, conv);
      if (kind === 'group') t.same(stored, roles(after.members), `${row.op} by ${row.by}: rows equal the log replay`);
      else {
        // Channel subscribers (conv.join) have rows but no events; everyone in the log has its row.
        const replayed = roles(after.members);
        t.same(Object.fromEntries(Object.keys(replayed).map((u) => [u, stored[u]])), replayed, `${row.op} by ${row.by}: rows agree with the log replay`);
        t.ok(Object.entries(stored).every(([u, r]) => u in replayed || r === 'member'), 'the others are subscribers');
      }
    }
    t.ok(table.length >= 40, `${table.length} rows`);
  });
}

t.test('direct conversations refuse every membership operation with forbidden', async (t) => {
  const w = await world(t);
  const d = devices(w, ['olga', 'ned']);
  await settle();
  t.equal((await req(d.olga!, { t: 'send', to: 'ned', cmid: 'x', body: bytes('hi') })).t, 'sent');
  const conv = 'd:ned:olga';
  for (const f of [
    { t: 'member.add', conv, users: ['zed'] },
    { t: 'member.remove', conv, user: 'ned' },
    { t: 'member.role', conv, user: 'ned', role: 'admin' },
    { t: 'conv.leave', conv },
    { t: 'conv.join', conv },
    { t: 'conv.meta', conv, name: 'x' },
    { t: 'receipts', conv, seq: 1 },
  ]) {
    t.equal(await outcome(d.olga!, f), 'forbidden', `${f.t} on a direct conversation`);
  }
  t.equal(await outcome(d.olga!, { t: 'member.add', conv: 'g:NOSUCHGROUP', users: ['zed'] }), 'not_found', 'unknown conversation');
  t.equal(await outcome(d.olga!, { t: 'members', conv, limit: 5 }), 'ok', 'members of a direct conversation are listed to its members');
});

for (const engine of ENGINES)
  t.test(`${engine}: a removed member learns it and is refused for send, history, sync past its removal, dack beyond it, read, members and receipts`, async (t) => {
  const w = await world(t, 2, {}, engine);
  const d = devices(w, ['olga', 'bob', 'carol']);
  await settle();
  const conv = await create(t, d.olga!, 'group', ['bob', 'carol']);
  t.equal((await req(d.bob!, { t: 'send', conv, cmid: 'b1', body: bytes('hello') })).t, 'sent');
  const seq = await ok(t, d.olga!, { t: 'member.remove', conv, user: 'bob' });
  t.equal(seq, 3);
  await until(() => sysMsgs(d.bob!, conv).length === 2, 'bob gets the remove event');
  t.same(sysMsgs(d.bob!, conv)[1]!.sys, { op: 'remove', by: 'olga', users: ['bob'] });
  await until(() => sysMsgs(d.carol!, conv).length === 2, 'carol too');
  t.equal(await outcome(d.bob!, { t: 'send', conv, cmid: 'b2', body: bytes('still here?') }), 'not_member');
  t.equal(await outcome(d.bob!, { t: 'history', conv, limit: 10 }), 'not_member');
  t.equal(await outcome(d.bob!, { t: 'members', conv, limit: 10 }), 'not_member');
  t.equal(await outcome(d.bob!, { t: 'receipts', conv, seq: 1 }), 'not_member');
  // A device still below its removal gets the entries up to it (actors-membership.test.ts); one at
  // the removal no longer sees the group.
  const behind = await req(d.bob!, { t: 'sync', cursors: { [conv]: 0 } });
  t.same((behind as { heads: Record<string, number>; left?: Record<string, number> }).left, { [conv]: 3 }, 'a cursor below the removal: synced.left');
  t.same(d.bob!.of('sync.batch').filter((b) => b.conv === conv).flatMap((b) => b.msgs.map((m) => m.seq)), [1, 2, 3], 'up to the removal only');
  d.bob!.clear();
  const synced = await req(d.bob!, { t: 'sync', cursors: { [conv]: 3 } });
  t.equal(synced.t, 'synced');
  t.notOk(conv in (synced as { heads: Record<string, number> }).heads, 'sync no longer lists the group');
  t.notOk(d.bob!.of('sync.batch').some((b) => b.conv === conv), 'and sends none of its messages');
  d.bob!.clear();
  d.bob!.send({ t: 'dack', conv, seq: 4 });
  d.bob!.send({ t: 'read', conv, seq: 3 });
  await until(() => d.bob!.of('error').length === 2, 'a dack beyond the removal and reads refused');
  t.same(d.bob!.of('error').map((e) => e.code).sort(), ['not_member', 'not_member']);
  // Olga's next message does not reach bob.
  t.equal((await req(d.olga!, { t: 'send', conv, cmid: 'o1', body: bytes('bye') })).t, 'sent');
  await until(() => d.carol!.msgs(conv).some((m) => m.seq === 4), 'carol gets it');
  await settle();
  t.notOk(d.bob!.msgs(conv).some((m) => m.seq === 4), 'bob does not');
});

for (const engine of ENGINES)
  t.test(`${engine}: group fan-out to every member device, per-member receipts and the all-delivered / all-read receipts`, async (t) => {
  const w = await world(t, 3, {}, engine);
  const d = devices(w, ['olga', 'bob', 'carol', 'dan']);
  const laptop = w.device('olga', 'laptop', 2).connect();
  const bobTablet = w.device('bob', 'tablet', 0).connect();
  await settle();
  const conv = await create(t, d.olga!, 'group', ['bob', 'carol', 'dan']);
  for (const i of [1, 2, 3]) t.equal((await req(d.olga!, { t: 'send', conv, cmid: `m${i}`, body: bytes(`m${i}`) })).t, 'sent');
  const receivers = [laptop, d.bob!, bobTablet, d.carol!, d.dan!];
  for (const dev of receivers) await until(() => dev.msgs(conv).filter((m) => m.sys === undefined).length === 3, `${dev.ref.user}/${dev.ref.device} gets 3 messages`);
  t.same(d.olga!.msgs(conv).map((m) => m.seq), [1], 'the sending device gets only the create event');
  const allOf = (dev: Device, kind: string) => dev.of('receipt').filter((r) => r.conv === conv && r.all === true && r.kind === kind).map((r) => r.seq);
  // Everyone but dan holds seq 4.
  for (const dev of [laptop, d.bob!, d.carol!]) dev.send({ t: 'dack', conv, seq: 4 });
  await settle();
  await w.advance(100); // the delivered-cursor batch is flushed: dacks count once it is stored
  const ask = async () => (await req(d.olga!, { t: 'receipts', conv, seq: 4 })) as Extract<ServerFrame, { t: 'receipts.state' }>;
  let q1 = await ask();
  // The flush is a real store write (Cassandra takes a few ms): ask again until it landed.
  for (let i = 0; i < 150 && q1.delivered.length < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    q1 = await ask();
  }
  t.same(q1.delivered, ['bob', 'carol', 'olga'], 'receipts: who received seq 4');
  t.same(q1.read, [], 'nobody has read yet (an author reads its own messages like any member)');
  t.equal(q1.deliveredAll, 0, 'dan has acknowledged nothing yet');
  d.dan!.send({ t: 'dack', conv, seq: 4 });
  await settle();
  t.equal(allOf(d.olga!, 'delivered').length, 0, "dan's dack counts only once its cursor is stored");
  await w.advance(100);
  for (const dev of [d.olga!, laptop]) await until(() => allOf(dev, 'delivered').includes(4), `${dev.ref.user}/${dev.ref.device}: delivered to all`);
  t.same(allOf(d.olga!, 'delivered'), [4], 'one all-delivered receipt, at the head');
  await settle();
  for (const dev of [d.bob!, bobTablet, d.carol!, d.dan!]) t.same(allOf(dev, 'delivered'), [], `${dev.ref.user}/${dev.ref.device} wrote nothing: no all-receipt`);
  t.equal(allOf(d.olga!, 'read').length, 0, 'nobody read yet');
  t.notOk(
    d.olga!.of('receipt').some((r) => r.conv === conv && r.user !== '*'),
    'no per-member receipt fan-out to the other members',
  );
  // Reads: bob reads on his phone; his tablet learns it, nobody else does.
  d.bob!.send({ t: 'read', conv, seq: 4 });
  await until(() => bobTablet.of('receipt').some((r) => r.kind === 'read' && r.user === 'bob' && r.seq === 4), "bob's read reaches his tablet");
  d.carol!.send({ t: 'read', conv, seq: 4 });
  await settle();
  const askCarol = async () => (await req(d.carol!, { t: 'receipts', conv, seq: 4 })) as Extract<ServerFrame, { t: 'receipts.state' }>;
  let q2 = await askCarol();
  // A read counts once its cursor is stored (a real store write): ask again until it landed.
  for (let i = 0; i < 150 && q2.read.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    q2 = await askCarol();
  }
  t.same(q2.read, ['bob', 'carol']);
  t.same({ deliveredAll: q2.deliveredAll, readAll: q2.readAll }, { deliveredAll: 4, readAll: 0 }, 'dan has read nothing');
  t.equal(allOf(d.olga!, 'read').length, 0, 'no all-read while dan has not read');
  d.dan!.send({ t: 'read', conv, seq: 4 });
  await settle();
  t.equal(allOf(d.olga!, 'read').length, 0, 'no all-read while the author has not read through its own messages');
  d.olga!.send({ t: 'read', conv, seq: 4 });
  for (const dev of [d.olga!, laptop]) await until(() => allOf(dev, 'read').includes(4), `${dev.ref.user}/${dev.ref.device}: read by all`);
  await settle();
  t.same(allOf(d.dan!, 'read'), [], 'read by all goes to the authors only');
  t.notOk(d.carol!.of('receipt').some((r) => r.user === 'bob' || r.user === 'dan'), "carol never gets other members' receipts");
});

t.test('the all-receipt state survives a new activation (filled from the stored cursors)', async (t) => {
  const w = await world(t);
  const d = devices(w, ['olga', 'bob']);
  await settle();
  const conv = await create(t, d.olga!, 'group', ['bob']);
  t.equal((await req(d.olga!, { t: 'send', conv, cmid: 'm1', body: bytes('m1') })).t, 'sent');
  d.bob!.send({ t: 'dack', conv, seq: 2 });
  d.bob!.send({ t: 'read', conv, seq: 1 });
  d.olga!.send({ t: 'read', conv, seq: 2 });
  await settle();
  await w.advance(100); // the delivered cursor batch is flushed
  // A new activation: idle passivation.
  await w.advance(120_000);
  const q = (await req(d.olga!, { t: 'receipts', conv, seq: 2 })) as Extract<ServerFrame, { t: 'receipts.state' }>;
  t.same(q.delivered, ['bob', 'olga'], "bob's stored delivered cursor is found (olga's from her read)");
  t.same(q.read, ['olga'], 'bob read only seq 1');
  t.equal(q.readAll, 1);
});

for (const engine of ENGINES)
  t.test(`${engine}: membership races: concurrent adds, removes and role changes; rows equal the replay and every device agrees`, async (t) => {
  const w = await world(t, 3, {}, engine);
  const admins = ['a1', 'a2', 'a3'];
  const cands = Array.from({ length: 8 }, (_, i) => `u${i}`);
  const d = devices(w, ['olga', ...admins, ...cands]);
  await settle();
  const conv = await create(t, d.olga!, 'group', []);
  await ok(t, d.olga!, { t: 'member.add', conv, users: admins, role: 'admin' });
  // Deterministic pseudo-random schedule.
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 8) % n;
  };
  const pending: Promise<{ by: string; frame: Record<string, unknown>; answer: ServerFrame }>[] = [];
  for (let round = 0; round < 12; round++) {
    for (const by of [...admins, 'olga']) {
      const u = cands[rnd(cands.length)]!;
      const choice = rnd(4);
      const frame =
        by === 'olga' && choice === 0
          ? { t: 'member.role', conv, user: u, role: rnd(2) === 0 ? 'admin' : 'member' }
          : choice <= 1
            ? { t: 'member.add', conv, users: [u, cands[rnd(cands.length)]!] }
            : { t: 'member.remove', conv, user: u };
      pending.push(req(d[by]!, frame).then((answer) => ({ by, frame, answer })));
    }
  }
  const results = await Promise.all(pending);
  const codes = new Map<string, number>();
  for (const r of results) {
    const k = r.answer.t === 'error' ? r.answer.code : 'ok';
    codes.set(k, (codes.get(k) ?? 0) + 1);
  }
  t.ok([...codes.keys()].every((c) => ['ok', 'forbidden', 'invalid_field'].includes(c)), `outcomes ${JSON.stringify(Object.fromEntries(codes))}`);
  const { events, members } = await replay(w, conv);
  t.ok(events.length > 10, `${events.length} events from ${results.length} operations`);
  t.same(events.map((e) => e.seq), [...events.map((e) => e.seq)].sort((a, b) => a - b));
  t.same(await rows(w, conv), roles(members), 'member rows equal the log replay');
  const page = (await req(d.olga!, { t: 'members', conv, limit: 500 })) as Extract<ServerFrame, { t: 'members.page' }>;
  t.same(Object.fromEntries(page.members.map((m) => [m.user, m.role])), roles(members), 'members.page equals the replay');
  // Every ok answer with a seq names an event by that user.
  for (const r of results) {
    if (r.answer.t !== 'conv.ok' || r.answer.seq === 0) continue;
    t.equal(events.find((e) => e.seq === (r.answer as { seq: number }).seq)?.e.by, r.by, `seq ${r.answer.seq} is ${r.by}'s`);
  }
  // Devices: olga and the admins were members throughout: they saw exactly the log's events. A
  // candidate saw exactly the events at seqs where it was a member before or after.
  const head = await w.store.head(conv);
  const state = new Map<string, MemberState>();
  const expected = new Map<string, number[]>();
  for (const { seq, e } of events) {
    const before = new Set(state.keys());
    applySys(state, e, 0, seq);
    for (const u of new Set([...before, ...state.keys()])) (expected.get(u) ?? expected.set(u, []).get(u)!).push(seq);
  }
  for (const u of ['olga', ...admins, ...cands]) {
    const dev = d[u]!;
    await until(() => sysMsgs(dev, conv).length >= (expected.get(u) ?? []).length, `${u} got its events`);
    await settle();
    t.same(sysMsgs(dev, conv).map((m) => m.seq), expected.get(u) ?? [], `${u} saw exactly the events of its membership`);
    for (const m of sysMsgs(dev, conv)) t.same(m.sys, events.find((e) => e.seq === m.seq)!.e);
  }
  t.ok(head >= events.length);
});

for (const engine of ENGINES)
  t.test(`${engine}: the last owner leaving promotes the earliest admin, else the earliest member`, async (t) => {
  const w = await world(t, 2, {}, engine);
  const d = devices(w, ['olga', 'mia', 'adam', 'max']);
  await settle();
  const g1 = await create(t, d.olga!, 'group', ['mia']);
  await ok(t, d.olga!, { t: 'member.add', conv: g1, users: ['adam'], role: 'admin' });
  const seq = await ok(t, d.olga!, { t: 'conv.leave', conv: g1 });
  const r1 = await replay(w, g1);
  t.same(r1.events.slice(-2), [
    { seq: seq - 1, e: { op: 'leave', by: 'olga', users: ['olga'] } },
    { seq, e: { op: 'role', by: 'olga', users: ['adam'], role: 'owner' } },
  ]);
  t.same(await rows(w, g1), { adam: 'owner', mia: 'member' });
  await until(() => sysMsgs(d.mia!, g1).length === 4, 'mia sees both events');
  t.equal(await outcome(d.olga!, { t: 'send', conv: g1, cmid: 'x', body: bytes('x') }), 'not_member');
  t.equal(await outcome(d.adam!, { t: 'member.role', conv: g1, user: 'mia', role: 'admin' }), 'ok', 'the new owner acts as owner');

  const g2 = await create(t, d.olga!, 'group', ['mia']);
  w.clock.advance(10);
  await ok(t, d.olga!, { t: 'member.add', conv: g2, users: ['max'] });
  await ok(t, d.olga!, { t: 'conv.leave', conv: g2 });
  t.same(await rows(w, g2), { max: 'member', mia: 'owner' }, 'no admin: the earliest member');
  // The last owner cannot step down while it is the only one.
  const g3 = await create(t, d.olga!, 'group', ['mia']);
  t.equal(await outcome(d.olga!, { t: 'member.role', conv: g3, user: 'olga', role: 'member' }), 'forbidden');
  await ok(t, d.olga!, { t: 'member.role', conv: g3, user: 'mia', role: 'owner' });
  t.equal(await outcome(d.olga!, { t: 'member.role', conv: g3, user: 'olga', role: 'member' }), 'ok', 'with another owner it can');
});

t.test('group_full at groups.maxMembers, on create and on add', async (t) => {
  const w = await world(t, 2, { maxGroupMembers: 3 });
  const d = devices(w, ['olga', 'mia', 'max', 'zed']);
  await settle();
  t.equal(await outcome(d.olga!, { t: 'conv.create', cmid: 'big', kind: 'group', members: ['mia', 'max', 'zed'] }), 'group_full');
  const conv = await create(t, d.olga!, 'group', ['mia']);
  t.equal(await outcome(d.olga!, { t: 'member.add', conv, users: ['max', 'zed'] }), 'group_full', 'two more would be 4');
  t.same(await rows(w, conv), { mia: 'member', olga: 'owner' }, 'nothing changed');
  await ok(t, d.olga!, { t: 'member.add', conv, users: ['max'] });
  t.equal(await outcome(d.olga!, { t: 'member.add', conv, users: ['zed'] }), 'group_full');
  t.equal(await ok(t, d.olga!, { t: 'member.add', conv, users: ['max'] }), 0, 'adding a member again is a no-op, not group_full');
  const channel = await create(t, d.olga!, 'channel', ['mia', 'max', 'zed']);
  t.ok(channel.startsWith('c:'), 'channels have no member limit');
});

for (const engine of ENGINES)
  t.test(`${engine}: member rows are repaired by the next activation after a failure between the append and the rows`, async (t) => {
  const w = await world(t, 2, {}, engine);
  const d = devices(w, ['olga', 'bob', 'carol']);
  await settle();
  const conv = await create(t, d.olga!, 'group', ['bob']);
  let failures = 0;
  const realPut = w.raw.putMember.bind(w.raw);
  w.hooks.putMember = ((c: string, u: string, role: never, at: number) => {
    if (u === 'carol' && failures++ === 0) return Promise.reject(new StoreError('store.unavailable', 'injected: crash before the row'));
    return realPut(c, u, role, at);
  }) as never;
  const seq = await ok(t, d.olga!, { t: 'member.add', conv, users: ['carol'] });
  t.equal(seq, 2, 'the event is committed (the log is the truth)');
  t.equal(failures, 1);
  t.equal(await w.raw.getMember(conv, 'carol'), null, 'the row is missing');
  t.equal((await w.raw.getConversation(conv))!.meta[PENDING_KEY], '1', 'the pending marker says rows are applied up to seq 1');
  // The failed activation ended; the next message activates afresh and repairs before serving.
  t.equal((await req(d.olga!, { t: 'send', conv, cmid: 'after', body: bytes('hi') })).t, 'sent');
  t.same(await rows(w, conv), { bob: 'member', carol: 'member', olga: 'owner' }, 'repaired');
  t.same((await w.raw.getConversation(conv))!.meta, {}, 'marker cleared');
  t.equal(await outcome(d.carol!, { t: 'history', conv, limit: 10 }), 'ok', 'carol reads history');
  await until(() => d.carol!.msgs(conv).some((m) => m.seq === 3), 'and gets the next message');

  // A crash right after the append (nothing of the rows written, marker left): simulated by a
  // putMember that never answers for one user, then a fresh activation elsewhere would repair.
  const conv2 = await create(t, d.olga!, 'group', []);
  w.hooks.updateConversationMeta = (async (c: string, meta: Record<string, string>) => {
    // The marker is written, the clearing write "crashes".
    if (meta[PENDING_KEY] === undefined && c === conv2) throw new StoreError('store.unavailable', 'injected: crash after the rows');
    return w.raw.updateConversationMeta(c, meta);
  }) as never;
  await ok(t, d.olga!, { t: 'member.add', conv: conv2, users: ['bob'] });
  delete w.hooks.updateConversationMeta;
  t.ok((await w.raw.getConversation(conv2))!.meta[PENDING_KEY] !== undefined, 'marker left behind');
  await ok(t, d.olga!, { t: 'conv.meta', conv: conv2, name: 'renamed' });
  t.same((await w.raw.getConversation(conv2))!.meta, { name: 'renamed' }, 'repaired and cleared, then the meta event applied');
  t.same(await rows(w, conv2), { bob: 'member', olga: 'owner' });
});

class RecordingFanout implements ChannelFanout {
  published: { conv: string; seqs: number[]; sys: number }[] = [];
  membership_: { conv: string; user: string; joined: boolean }[] = [];
  publish(conv: string, msgs: DeliveredEntry[]): void {
    this.published.push({ conv, seqs: msgs.map((m) => m.seq), sys: msgs.filter((m) => m.sys !== undefined).length });
  }
  membership(conv: string, user: string, joined: boolean): void {
    this.membership_.push({ conv, user, joined });
  }
}

t.test('channels: posts go to ChannelFanout.publish and the author, never per subscriber; join/leave write no event', async (t) => {
  const fanout = new RecordingFanout();
  const w = await world(t, 2, { channelFanout: fanout });
  const d = devices(w, ['olga', 'sub1', 'sub2']);
  const laptop = w.device('olga', 'laptop', 1).connect();
  await settle();
  const conv = await create(t, d.olga!, 'channel', []);
  t.equal(await ok(t, d.sub1!, { t: 'conv.join', conv }), 0);
  t.equal(await ok(t, d.sub2!, { t: 'conv.join', conv }), 0);
  t.same(fanout.membership_, [
    { conv, user: 'olga', joined: true },
    { conv, user: 'sub1', joined: true },
    { conv, user: 'sub2', joined: true },
  ]);
  for (const i of [1, 2]) t.equal((await req(d.olga!, { t: 'send', conv, cmid: `p${i}`, body: bytes(`post ${i}`) })).t, 'sent');
  await until(() => laptop.msgs(conv).filter((m) => m.sys === undefined).length === 2, "the author's other device gets its posts (with cmid)");
  t.ok(laptop.msgs(conv).filter((m) => m.sys === undefined).every((m) => m.cmid !== undefined));
  t.same(fanout.published.flatMap((p) => p.seqs), [1, 2, 3], 'create event and both posts published');
  await settle();
  t.equal(d.sub1!.msgs(conv).length, 0, 'subscribers get nothing through their user actors');
  t.equal(await outcome(d.sub1!, { t: 'send', conv, cmid: 'x', body: bytes('x') }), 'forbidden');
  // Receipts: stored, told to nobody but the reader's own devices.
  d.sub1!.send({ t: 'dack', conv, seq: 3 });
  d.sub1!.send({ t: 'read', conv, seq: 3 });
  await settle();
  t.equal(d.olga!.of('receipt').length + laptop.of('receipt').length + d.sub2!.of('receipt').length, 0, 'no receipt fan-out in channels');
  // The read cursor is written without holding up the actor: poll for it.
  let stored: number | undefined;
  for (const end = Date.now() + 5000; Date.now() < end; await settle()) {
    stored = (await w.raw.getRead('sub1')).find((r) => r.conversationId === conv)?.seq;
    if (stored === 3) break;
  }
  t.equal(stored, 3, 'read cursor stored');
  const synced = await req(d.sub2!, { t: 'sync' });
  t.equal((synced as { heads: Record<string, number> }).heads[conv], 3, 'sync covers the channel');
  t.equal(await ok(t, d.sub1!, { t: 'conv.leave', conv }), 0, 'a subscriber leaving writes no event');
  t.same(fanout.membership_.at(-1), { conv, user: 'sub1', joined: false });
  t.equal(await w.store.head(conv), 3, 'the log holds only the create event and the posts');
  t.equal(await outcome(d.sub1!, { t: 'history', conv, limit: 5 }), 'not_member');
});

t.test('channels without ChannelFanout fall back to member user actors (actor-layer tests)', async (t) => {
  const w = await world(t);
  const d = devices(w, ['olga', 'sub1']);
  await settle();
  const conv = await create(t, d.olga!, 'channel', ['sub1']);
  t.equal((await req(d.olga!, { t: 'send', conv, cmid: 'p1', body: bytes('post') })).t, 'sent');
  await until(() => d.sub1!.msgs(conv).some((m) => m.seq === 2), 'the subscriber gets the post');
  t.equal(d.sub1!.msgs(conv)[0]!.kind, 'channel');
});

t.test('a group request lost with a crashed conversation shard closes the session (4005); an answered one does not', async (t) => {
  const { shardOf } = await import('../../src/actors/address.js');
  const { CLOSE } = await import('../../src/protocol/codes.js');
  const w = await world(t, 3);
  // A user whose actor is on shard 0 and a cmid whose group lives on shard 1.
  let user = '';
  for (let i = 0; user === ''; i++) if (shardOf(`gu${i}`, 3) === 0) user = `gu${i}`;
  const cmids: string[] = [];
  for (let i = 0; cmids.length < 2; i++) if (shardOf(createdConversationId(user, 'group', `k${i}`), 3) === 1) cmids.push(`k${i}`);
  const dev = w.device(user, 'phone', 0).connect();
  await settle();
  const answered = await req(dev, { t: 'conv.create', cmid: cmids[0], kind: 'group' });
  t.equal(answered.t, 'conv.ok');
  w.shards[0]!.shardRestarted(1);
  t.equal(dev.closed, null, 'an answered conv.create leaves nothing in flight');
  w.net.cut.add(1);
  dev.send({ t: 'conv.create', id: 999_999, cmid: cmids[1]!, kind: 'group' });
  await settle();
  t.equal(dev.closed, null, 'nothing answers meanwhile');
  w.net.cut.delete(1);
  w.shards[0]!.shardRestarted(1);
  t.equal(dev.closed?.code, CLOSE.shardRestarting, 'the lost request closes the session so the client retries');
});
