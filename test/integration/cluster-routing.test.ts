/**
 * Cluster mode end to end: node processes (2 shard threads each) sharing the test Redis (directory,
 * bus, session registry) and one Cassandra keyspace, SDK clients connected to different nodes.
 *
 * - 1:1 across nodes: alice on node A, bob on node B; every message reaches the other side in seq
 *   order, every send is acked, delivered and read receipts cross the nodes; alice's second device
 *   on node B gets every message, her own phone's included.
 * - Drain: the node that owns the conversation gets SIGTERM mid-traffic; it exits 0, another node
 *   takes the conversation over at once, and every acked message is on every device (seqs dense).
 * - kill -9: the owner is killed mid-traffic; after its lease (1.5 s here) another node takes over
 *   and nothing acked is lost.
 */
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { RedisDirectory } from '../../src/cluster/directory/redis-directory.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { clusterSpec, startClusterNode, type ClusterNode, type ClusterSpec } from '../support/cluster-nodes.js';
import { compact, describeAll, range, waitUntil, type E2eClient } from '../support/e2e-client.js';
import { requireRedisUrl } from '../support/env.js';

const spec = clusterSpec('cluster_routing');

async function ownerOf(s: ClusterSpec, conv: string): Promise<string | null> {
  const redis = new Redis(requireRedisUrl(), { keyPrefix: s.keyPrefix, lazyConnect: true });
  try {
    await redis.connect();
    const dir = new RedisDirectory({ redis, leaseMs: s.leaseMs });
    const owner = await dir.lookup(`conv/${conv}`);
    return owner === null ? null : owner.node.replace(/\.\d+$/, '');
  } finally {
    redis.disconnect();
  }
}

function assertConverged(t: Test, clients: E2eClient[], conv: string, total: number): void {
  const reference = clients[0]!.view(conv);
  for (const c of clients) {
    const seqs = c.messages(conv).map((m) => m.seq);
    t.ok(
      seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
      `${c.label} received ${conv} in ascending seq order without duplicates: ${compact(seqs)}`,
    );
    const view = c.view(conv);
    t.same([...view.keys()].sort((a, b) => a - b), range(1, total), `${c.label} holds seqs 1..${total}`);
    t.same(
      range(1, total).filter((s) => view.get(s)?.mid !== reference.get(s)?.mid),
      [],
      `${c.label} has the same message at every seq`,
    );
  }
}

/** Every acked send of `clients` to `conv`, as seq -> body; fails on two bodies at one seq. */
function acked(t: Test, clients: E2eClient[], conv: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const c of clients) {
    for (const o of c.outgoing) {
      if (o.result?.conv !== conv) continue;
      const prev = out.get(o.result.seq);
      if (prev !== undefined && prev !== o.body) t.fail(`seq ${o.result.seq} acked for two bodies: ${prev} / ${o.body}`);
      out.set(o.result.seq, o.body);
    }
  }
  return out;
}

t.test('1:1 across nodes with receipts, and a user with devices on two nodes gets every message on both', async (t) => {
  const a = await startClusterNode(t, spec, 'ra');
  const b = await startClusterNode(t, spec, 'rb');
  const alice = 'alice.r1';
  const bob = 'bob.r1';
  const aPhone = a.client(alice, 'phone');
  const bPhone = b.client(bob, 'phone');
  const aLaptop = b.client(alice, 'laptop');
  const all = [aPhone, bPhone, aLaptop];
  const describe = describeAll(all);
  await Promise.all(all.map((c) => c.connect()));
  const conv = directConversationId(alice, bob);

  await aPhone.send({ to: bob }, 'hello bob');
  await bPhone.send({ to: alice }, 'hi alice');
  await Promise.all([
    ...range(1, 8).map((i) => aPhone.send({ to: bob }, `alice ${i}`)),
    ...range(1, 8).map((i) => bPhone.send({ to: alice }, `bob ${i}`)),
    ...range(1, 4).map((i) => aLaptop.send({ conv }, `laptop ${i}`)),
  ]);
  const total = 2 + 8 + 8 + 4;
  const ack = acked(t, all, conv);
  t.same([...ack.keys()].sort((x, y) => x - y), range(1, total), 'every send was acked once, seqs 1..N');

  await waitUntil(() => all.every((c) => c.view(conv).size === total), `every device to hold 1..${total}`, describe);
  assertConverged(t, all, conv, total);
  t.equal(
    aLaptop.messages(conv).filter((m) => m.from === alice && m.fdev === 'phone').length,
    1 + 8,
    "alice/laptop (node rb) got every one of alice/phone's (node ra) messages live",
  );
  t.equal(bPhone.messages(conv).filter((m) => m.from === alice).length, 1 + 8 + 4, 'bob/phone (rb) got every message of alice’s two devices');

  const hasReceipt = (c: E2eClient, kind: 'delivered' | 'read', user: string, seq: number) =>
    c.receipts().some((r) => r.conv === conv && r.kind === kind && r.user === user && r.seq >= seq);
  await waitUntil(() => hasReceipt(aPhone, 'delivered', bob, total), `alice/phone (ra) to get bob's (rb) delivered receipt up to ${total}`, describe);
  bPhone.sdk.markRead(conv, total);
  await waitUntil(
    () => hasReceipt(aPhone, 'read', bob, total) && hasReceipt(aLaptop, 'read', bob, total),
    `alice's devices on both nodes to get bob's read receipt at ${total}`,
    describe,
  );

  const owner = await ownerOf(spec, conv);
  t.ok(owner === 'ra' || owner === 'rb', `the directory names one node as the conversation's owner (${owner})`);
  const metrics = (await a.metrics()) + (await b.metrics());
  t.match(metrics, /ticks_cluster_conv_routes_total\{result="forwarded"\} [1-9]/, 'some messages were forwarded to the owner node');
  t.match(metrics, /ticks_cluster_node_frames_total\{type="users",result="sent"\} [1-9]/, 'deliveries crossed nodes as users frames');
});

/**
 * Two senders on the surviving nodes keep sending while the owner goes away; returns once both
 * finished `perSender` acked sends.
 */
async function trafficThrough(
  t: Test,
  ownerNode: ClusterNode,
  event: () => Promise<void>,
  clients: { x: E2eClient; y: E2eClient; xUser: string; yUser: string },
  conv: string,
  perSender: number,
): Promise<void> {
  const { x, y, xUser, yUser } = clients;
  let sent = 0;
  const run = async (c: E2eClient, to: string, tag: string) => {
    for (let i = 1; i <= perSender; i++) {
      await c.send({ to }, `${tag} ${i}`);
      sent++;
    }
  };
  const traffic = Promise.all([run(x, yUser, 'x'), run(y, xUser, 'y')]);
  await waitUntil(() => sent >= perSender / 2, 'traffic to be flowing', () => '');
  t.ok(ownerNode.running, 'the owner is still running when the fault hits');
  await event();
  await traffic;
  void conv;
}

for (const fault of ['drain', 'kill'] as const) {
  t.test(`${fault === 'drain' ? 'SIGTERM drain' : 'kill -9'} of the owning node mid-traffic: another node takes over, no acked message is lost`, async (t) => {
    const s = clusterSpec(`cluster_${fault}`);
    const owner = await startClusterNode(t, s, `${fault}-o`);
    const n1 = await startClusterNode(t, s, `${fault}-1`);
    const n2 = await startClusterNode(t, s, `${fault}-2`);
    const x = `x.${fault}`;
    const y = `y.${fault}`;
    const conv = directConversationId(x, y);
    // The first send comes through the future owner, so its home shard registers the conversation.
    const seed = owner.client(x, 'seed');
    await seed.connect();
    await seed.send({ to: y }, 'seed');
    t.equal(await ownerOf(s, conv), owner.id, `${owner.id} owns the conversation`);
    seed.close();

    const xPhone = n1.client(x, 'phone');
    const yPhone = n2.client(y, 'phone');
    const yTablet = n1.client(y, 'tablet');
    const all = [xPhone, yPhone, yTablet];
    const describe = describeAll(all);
    await Promise.all(all.map((c) => c.connect()));

    const t0 = Date.now();
    let faultAt = 0;
    await trafficThrough(
      t,
      owner,
      async () => {
        faultAt = Date.now();
        if (fault === 'drain') t.equal(await owner.term(), 0, 'the drained node exits 0');
        else await owner.kill9();
      },
      { x: xPhone, y: yPhone, xUser: x, yUser: y },
      conv,
      30,
    );
    const newOwner = await ownerOf(s, conv);
    t.ok(newOwner === n1.id || newOwner === n2.id, `a surviving node owns the conversation now (${newOwner})`);

    const ack = acked(t, [...all, seed], conv);
    const total = 1 + 60;
    t.same([...ack.keys()].sort((a, b) => a - b), range(1, total), `all ${total} sends acked, seqs dense 1..${total}`);
    await waitUntil(() => all.every((c) => c.view(conv).size === total), `every device to hold 1..${total}`, describe);
    assertConverged(t, all, conv, total);
    for (const [seq, body] of ack) {
      if (xPhone.view(conv).get(seq)?.body !== body) t.fail(`acked seq ${seq} (${body}) differs on ${xPhone.label}`);
    }
    t.comment(`${fault}: traffic ${Date.now() - t0} ms, fault at +${faultAt - t0} ms, lease ${s.leaseMs} ms`);
  });
}
