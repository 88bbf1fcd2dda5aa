/**
 * The group fan-out window (groups.fanoutWindowMs, ConversationDeps.fanoutWindowMs) in the actor
 * layer, on the manual clock: a message after a quiet window goes out at once; later ones are held
 * until the window ends and then reach every member together, in seq order; an event (member.add)
 * sends what is held to the members before it, ahead of itself; the end of the activation (drain)
 * sends what is held. Direct conversations are never held.
 */
import t, { type Test } from 'tap';
import { convMetrics } from '../../src/actors/metrics.js';
import { bytes, req, settle, text, until, World, type Device } from './actors-harness.js';

const WINDOW_MS = 1000;
async function held(): Promise<number> {
  return (await convMetrics.fanoutHeld.get()).values[0]?.value ?? 0;
}

async function setUp(t: Test): Promise<{ w: World; ann: Device; bob: Device; cid: Device; conv: string }> {
  const w = await new World(2, {}, { groupFanoutWindowMs: WINDOW_MS }).open();
  t.teardown(() => w.close());
  const ann = w.device('ann', 'phone', 0).connect();
  const bob = w.device('bob', 'phone', 1).connect();
  const cid = w.device('cid', 'phone', 0).connect();
  await settle();
  const a = await req(ann, { t: 'conv.create', cmid: 'c1', kind: 'group', members: ['bob', 'cid'] });
  if (a.t !== 'conv.ok') throw new Error(`create answered ${JSON.stringify(a)}`);
  return { w, ann, bob, cid, conv: a.conv };
}

/** The messages a device holds, deduplicated by seq as a client does (the manual clock's advance also fires delivery retries). */
function bodies(d: Device, conv: string): string[] {
  const bySeq = new Map<number, string>();
  for (const m of d.msgs(conv)) if (m.sys === undefined && !bySeq.has(m.seq)) bySeq.set(m.seq, text(m.body));
  return [...bySeq.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b);
}

t.test('a quiet group delivers at once; a busy one holds until the window ends, then delivers in order', async (t) => {
  const { w, ann, bob, cid, conv } = await setUp(t);
  const before = await held();
  t.equal((await req(ann, { t: 'send', conv, cmid: 'm1', body: bytes('m1') })).t, 'sent');
  await until(() => bodies(bob, conv).length === 1 && bodies(cid, conv).length === 1, 'm1 delivered without waiting');
  for (const c of ['m2', 'm3']) t.equal((await req(ann, { t: 'send', conv, cmid: c, body: bytes(c) })).t, 'sent', `${c} acked at its commit`);
  await settle();
  t.same(bodies(bob, conv), ['m1'], 'm2 and m3 are held (sent is not)');
  t.equal((await held()) - before, 2, 'ticks_conv_fanout_held_messages_total counted them');
  await w.advance(WINDOW_MS);
  await until(() => bodies(bob, conv).length === 3 && bodies(cid, conv).length === 3, 'held messages delivered at the end of the window');
  t.same(bodies(bob, conv), ['m1', 'm2', 'm3']);
  t.same(bodies(cid, conv), ['m1', 'm2', 'm3']);
  const firstCopies = bob.msgs(conv).filter((m, i, all) => all.findIndex((x) => x.seq === m.seq) === i).map((m) => m.seq);
  t.same(firstCopies, [...firstCopies].sort((a, b) => a - b), 'first copies arrived in seq order');
});

t.test('an event sends what is held first, to the members before it', async (t) => {
  const { ann, bob, conv, w } = await setUp(t);
  t.equal((await req(ann, { t: 'send', conv, cmid: 'm1', body: bytes('m1') })).t, 'sent');
  t.equal((await req(ann, { t: 'send', conv, cmid: 'm2', body: bytes('m2') })).t, 'sent');
  await settle();
  t.same(bodies(bob, conv), ['m1'], 'm2 held');
  const dan = w.device('dan', 'phone', 1).connect();
  await settle();
  const add = await req(ann, { t: 'member.add', conv, users: ['dan'] });
  t.equal(add.t, 'conv.ok');
  const addSeq = (add as { seq: number }).seq;
  await until(() => bob.msgs(conv).some((m) => m.seq === addSeq), 'the add event reached bob');
  const order = bob.msgs(conv).map((m) => (m.sys === undefined ? text(m.body) : `event ${m.seq}`));
  t.same(order.slice(-2), ['m2', `event ${addSeq}`], 'the held message went out before the event');
  await until(() => dan.msgs(conv).some((m) => m.seq === addSeq), 'dan gets its add event');
  t.same(bodies(dan, conv), [], 'dan never gets the message held from before it joined');
});

t.test('draining sends what is held; direct conversations are never held', async (t) => {
  const { ann, bob, cid, conv, w } = await setUp(t);
  const before = await held();
  const direct = await req(ann, { t: 'send', to: 'bob', cmid: 'd1', body: bytes('d1') });
  t.equal(direct.t, 'sent');
  t.equal((await req(ann, { t: 'send', to: 'bob', cmid: 'd2', body: bytes('d2') })).t, 'sent');
  const dconv = (direct as { conv: string }).conv;
  await until(() => bodies(bob, dconv).length === 2, 'both direct messages delivered without the window');
  t.equal((await held()) - before, 0, 'nothing held for a direct conversation');
  t.equal((await req(ann, { t: 'send', conv, cmid: 'm1', body: bytes('m1') })).t, 'sent');
  t.equal((await req(ann, { t: 'send', conv, cmid: 'm2', body: bytes('m2') })).t, 'sent');
  await settle();
  t.same(bodies(bob, conv), ['m1']);
  t.same(bodies(cid, conv), ['m1']);
  // Draining the conversation's shard ends its activation, which sends what it held. The member
  // whose user actor (placed by hash of the user id) lives on the other shard gets it; on the drained
  // shard the user actors end too.
  const router = w.shards[0]!.router;
  const home = router.shardOf(conv);
  const other = [bob, cid].find((d) => router.shardOf(d.ref.user) !== home);
  if (other === undefined) return void t.fail('the test needs a member whose user actor is on the other shard');
  await w.shards[home]!.drain();
  await until(() => bodies(other, conv).length === 2, 'the held message was delivered when the activation ended');
  t.same(bodies(other, conv), ['m1', 'm2']);
});
