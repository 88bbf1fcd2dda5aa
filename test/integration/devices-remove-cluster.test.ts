/**
 * `DELETE /devices/:device` in cluster mode: two node processes sharing the test Redis (session
 * registry, bus) and one Cassandra keyspace (tombstones). A removal asked on node A closes the
 * device's session on node B (over the bus) and on node A itself with 4507; the tombstone is shared,
 * so a token issued before the removal is refused on either node, and one issued after it is
 * accepted; the user's other devices stay connected.
 */
import t from 'tap';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema } from '../../src/config/schema.js';
import { CLOSE } from '../../src/protocol/codes.js';
import { CLUSTER_SECRET, clusterSpec, startClusterNode, type ClusterNode } from '../support/cluster-nodes.js';
import { waitUntil, type E2eClient } from '../support/e2e-client.js';
import { nextSecondAfter, rawConnect } from '../support/raw-connect.js';

const spec = clusterSpec('devices_cluster');
const settings = configSchema.parse({}).auth;
const jwt = (user: string, device: string): Promise<string> => mintHs256Token({ secret: CLUSTER_SECRET, user, device, ttlS: 3600, settings });

async function removeDevice(node: ClusterNode, token: string, device: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${node.port}/devices/${device}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  return res.status;
}

async function metric(node: ClusterNode, name: string, label: string): Promise<number> {
  let sum = 0;
  for (const line of (await node.metrics()).split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\d+(?:\.\d+)?)$/.exec(line);
    if (m && m[1] === name && m[2]!.includes(label)) sum += Number(m[3]);
  }
  return sum;
}

const closeCodes = (c: E2eClient): number[] => c.log.flatMap((l) => (l.k === 'closed' ? [l.code] : []));

t.test('a removal closes the device on another node and on this one, and refuses its old tokens everywhere', async (t) => {
  const [a, b] = await Promise.all([startClusterNode(t, spec, 'A'), startClusterNode(t, spec, 'B')]);
  // alice: phone on B, tablet and laptop on A; bob on B.
  const phone = b.client('alice', 'phone');
  const tablet = a.client('alice', 'tablet');
  const laptop = a.client('alice', 'laptop');
  const bob = b.client('bob', 'phone');
  await Promise.all([phone.connect(), tablet.connect(), laptop.connect(), bob.connect()]);
  const oldPhone = await jwt('alice', 'phone');
  const oldTablet = await jwt('alice', 'tablet');

  t.equal(await removeDevice(a, await jwt('alice', 'laptop'), 'phone'), 204, 'the laptop (node A) removes the phone (node B)');
  await waitUntil(() => closeCodes(phone).length > 0, 'the phone on node B to be closed', () => phone.describe());
  t.same(closeCodes(phone), [CLOSE.deviceRemoved], 'the phone on the other node is closed with 4507');
  t.equal(await metric(a, 'ticks_devices_removed_sessions_total', 'node="other"'), 1, 'node A counts a close on another node');

  t.equal(await removeDevice(a, await jwt('alice', 'laptop'), 'tablet'), 204, 'the laptop removes the tablet (same node)');
  const removedAt = Date.now();
  await waitUntil(() => closeCodes(tablet).length > 0, 'the tablet on node A to be closed', () => tablet.describe());
  t.same(closeCodes(tablet), [CLOSE.deviceRemoved], 'the tablet on the same node is closed with 4507');

  for (const node of [a, b]) {
    for (const [name, token] of [
      ['phone', oldPhone],
      ['tablet', oldTablet],
    ] as const) {
      const r = await rawConnect(node.url, token);
      t.equal(r.closeCode, CLOSE.deviceRemoved, `the ${name}'s old token is refused with 4507 on node ${node.id}`);
      t.equal(r.hello, false);
    }
  }

  // Other devices untouched: the laptop (node A) still gets bob's message live, and was never closed.
  const mark = laptop.mark();
  const sent = await bob.send({ to: 'alice' }, 'laptop?');
  await waitUntil(() => laptop.messages(sent.conv, mark).length === 1, 'the laptop to get the message', () => laptop.describe());
  t.same(closeCodes(laptop), [], 'the laptop was not closed');
  t.same(laptop.reconnectCodes(), [], 'nor reconnected');
  t.same(phone.reconnectCodes(), [], 'the removed phone did not try to reconnect');

  // A token issued after the removal registers the device again, on either node.
  await nextSecondAfter(removedAt);
  t.equal((await rawConnect(b.url, await jwt('alice', 'tablet'))).hello, true, 'a new tablet token is accepted on node B');
  const phone2 = a.client('alice', 'phone');
  await phone2.connect();
  const sent2 = await bob.send({ to: 'alice' }, 'phone is back');
  await waitUntil(() => phone2.messages(sent2.conv).some((m) => new TextDecoder().decode(m.body) === 'phone is back'), 'the re-registered phone (node A) to get live messages', () => phone2.describe());
  t.same(closeCodes(phone2), [], 'the re-registered phone stays connected');
});
