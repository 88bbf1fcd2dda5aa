/**
 * Scenario 6, end to end through the SDK: one shard thread crashes (the test-only hook
 * `RunningNode.crashShard`) while sends are in flight, and more sends are made while it is down.
 * The supervisor restarts it; clients whose socket or user actor was on it, or whose send was lost
 * with it, hear 4005 and reconnect with the SDK's backoff; no acknowledged message is lost, every
 * retried send is stored once, every device reaches the head in order before anyone sends again (a
 * lost delivery of the last message would otherwise be repaired by later traffic and go unseen),
 * and messages sent after the recovery are delivered live. Embedded store and Cassandra.
 */
import t from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { compact, describeAll, range, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode, type E2eNode } from '../support/e2e-node.js';

const PAIRS = 6;
const BEFORE = 5;
const BURST = 10;

/** Restarts of shard threads so far (readyShards() alone cannot tell: a dying shard counts as ready until it exits). */
async function restarts(n: E2eNode): Promise<number> {
  return Number(/^ticks_node_shard_restarts_total (\d+)$/m.exec(await n.node.metrics())?.[1] ?? 0);
}

interface Pair {
  conv: string;
  a: E2eClient;
  b: E2eClient;
}

for (const engine of e2eEngines('e2e_crash')) {
  t.test(`${engine.name}: a crashed shard is survived: clients reconnect, no acked message is lost, new messages flow`, async (t) => {
    const n = await startE2eNode(t, engine);
    const pairs: Pair[] = range(1, PAIRS).map((i) => {
      const alice = n.user(`alice${i}`);
      const bob = n.user(`bob${i}`);
      return { conv: directConversationId(alice, bob), a: n.client(alice, 'phone'), b: n.client(bob, 'phone') };
    });
    const clients = pairs.flatMap((p) => [p.a, p.b]);
    const describe = describeAll(clients);
    await Promise.all(clients.map((c) => c.connect()));
    const bobOf = (p: Pair) => p.b.label.split('/')[0]!;
    const aliceOf = (p: Pair) => p.a.label.split('/')[0]!;

    // Before: every pair exchanges a few messages.
    await Promise.all(
      pairs.map(async (p) => {
        for (let k = 1; k <= BEFORE; k++) await (k % 2 ? p.a.send({ to: bobOf(p) }, `before ${k}`) : p.b.send({ to: aliceOf(p) }, `before ${k}`));
      }),
    );
    await waitUntil(() => pairs.every((p) => p.a.sdk.cursor(p.conv) === BEFORE && p.b.sdk.cursor(p.conv) === BEFORE), 'every device at the head before the crash', describe);

    // The crash: shard 0 dies as the first `sent` of the burst reaches any client.
    const marks = new Map(clients.map((c) => [c, c.mark()]));
    let crashed = false;
    for (const p of pairs) {
      p.a.net.cutOnReceive = (f) => {
        if (!crashed && f.t === 'sent' && f.seq > BEFORE) {
          crashed = true;
          n.node.crashShard(0);
        }
        return false;
      };
    }
    const bursts = pairs.map((p, i) => Promise.all(range(1, BURST).map((k) => p.a.send({ conv: p.conv }, `burst ${k}`, `burst-${i}-${k}`))));
    // While shard 0 is down (exited, not yet restarted), every bob sends too: a request routed to
    // the dead thread is lost, so its session must be closed for the SDK to retry it.
    await waitUntil(() => n.node.readyShards() < 2, 'shard 0 to exit', describe);
    const down = pairs.map((p, i) => p.b.send({ to: aliceOf(p) }, 'sent while shard 0 was down', `down-${i}`));
    await waitUntil(async () => crashed && n.node.readyShards() === 2 && (await restarts(n)) > 0, 'shard 0 to be restarted', describe);
    const results = await Promise.all(bursts);
    const downResults = await Promise.all(down);
    for (const p of pairs) p.a.net.cutOnReceive = null;
    t.ok(crashed, 'shard 0 was crashed while the burst was in flight');
    const hit = clients.filter((c) => c.reconnectCodes(marks.get(c)).includes(CLOSE.shardRestarting));
    t.ok(hit.length > 0, `${hit.length} of ${clients.length} clients heard 4005 and reconnected`);
    t.ok(
      clients.every((c) => c.reconnectCodes(marks.get(c)).every((code) => code === CLOSE.shardRestarting || code === 1006)),
      'no client was closed for another reason',
    );

    // Every send was stored once, at the next seqs.
    const head = BEFORE + BURST + 1;
    for (const [i, p] of pairs.entries()) {
      const seqs = [...results[i]!, downResults[i]!].map((r) => r.seq).sort((x, y) => x - y);
      t.same(seqs, range(BEFORE + 1, head), `${p.conv}: the burst and the send made while down hold seqs ${BEFORE + 1}..${head}, each once (got ${compact(seqs)})`);
    }

    // Every device gets every acked message, in order, before any later message could repair a gap.
    await waitUntil(() => pairs.every((p) => p.b.sdk.cursor(p.conv) === head && p.a.sdk.cursor(p.conv) === head), `every device at seq ${head}`, describe);
    const sources = clients.flatMap((c) => c.messages()).reduce<Record<string, number>>((acc, m) => ({ ...acc, [m.source]: (acc[m.source] ?? 0) + 1 }), {});
    t.comment(`messages received by source: ${JSON.stringify(sources)}`);
    for (const [i, p] of pairs.entries()) {
      const acked = new Map([...results[i]!, downResults[i]!].map((r) => [r.seq, r.mid]));
      for (const c of [p.a, p.b]) {
        const seqs = c.messages(p.conv).map((m) => m.seq);
        t.ok(seqs.every((s, j) => j === 0 || s > seqs[j - 1]!), `${c.label} received in order without duplicates: ${compact(seqs)}`);
        const view = c.view(p.conv);
        const lost = [...acked].filter(([seq, mid]) => view.get(seq)?.mid !== mid).map(([seq]) => seq);
        t.same(lost, [], `${c.label} holds every message acked around the crash, with the acked id`);
      }
    }

    // After the recovery, messages flow both ways on every pair.
    const after = await Promise.all(pairs.map((p) => p.b.send({ to: aliceOf(p) }, 'after the crash')));
    t.ok(after.every((r) => r.seq === head + 1 && !r.dup), 'new sends get the next seq');
    await waitUntil(
      () => pairs.every((p) => p.a.messages(p.conv).some((m) => m.seq === head + 1)),
      'every alice to get the message sent after the recovery',
      describe,
    );
    const reply = await Promise.all(pairs.map((p) => p.a.send({ conv: p.conv }, 'reply')));
    await waitUntil(() => pairs.every((p, i) => p.b.sdk.cursor(p.conv) === reply[i]!.seq), 'every bob to get the reply', describe);
    t.ok(pairs.every((p) => p.a.messages(p.conv).at(-1)?.source === 'live'), 'delivered live after the recovery');
  });
}
