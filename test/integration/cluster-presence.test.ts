/**
 * Presence and typing across nodes (cluster mode: two node processes on the test Redis and one
 * Cassandra keyspace), through raw protocol frames: `presence.sub` answers the current state,
 * online/offline changes reach the watchers on the other node, typing reaches the other member's
 * watching devices (never the sender's own), the per-connection cap answers too_many_watches, and
 * a non-member cannot watch or type in a conversation.
 */
import t from 'tap';
import { directConversationId } from '../../src/protocol/ids.js';
import { clusterSpec, startClusterNode, type ClusterNode } from '../support/cluster-nodes.js';
import { RawClient } from '../support/cluster-raw-client.js';
import { waitUntil } from '../support/e2e-client.js';
import { E2E_SECRET, startE2eNode } from '../support/e2e-node.js';

t.test('presence and typing across two nodes', async (t) => {
  const spec = clusterSpec('cluster_presence');
  const a = await startClusterNode(t, spec, 'pa');
  const b = await startClusterNode(t, spec, 'pb');
  const alice = 'alice.p1';
  const bob = 'bob.p1';
  const carol = 'carol.p1';
  const conv = directConversationId(alice, bob);
  const clients: RawClient[] = [];
  t.teardown(() => clients.forEach((c) => c.close()));
  const client = async (node: ClusterNode, user: string, device: string) => {
    const c = new RawClient(node, user, device);
    clients.push(c);
    await c.open();
    return c;
  };

  const aPhone = await client(a, alice, 'phone');
  // bob is offline: alice sees that, and no last seen.
  const first = await aPhone.request({ t: 'presence.sub', id: 10, users: [bob], convs: [conv] });
  t.same(first, { t: 'presence.state', id: 10, users: [{ user: bob, online: false, lastSeen: null }] }, 'bob was never seen');

  // bob connects on the other node: alice's watch hears it.
  const before = Date.now();
  const bPhone = await client(b, bob, 'phone');
  await waitUntil(() => aPhone.frames.some((f) => f.t === 'presence' && f.user === bob && f.online), 'alice to see bob come online');
  const online = aPhone.frames.find((f) => f.t === 'presence' && f.user === bob)!;
  t.match(online, { t: 'presence', user: bob, online: true }, 'online event across nodes');
  t.ok(online.t === 'presence' && online.lastSeen !== null && online.lastSeen >= before - 1000, 'with a server last seen');

  // bob watches the chat too and types; alice (node pa) sees it, bob's own device does not.
  const subB = await bPhone.request({ t: 'presence.sub', id: 11, users: [alice], convs: [conv] });
  t.match(subB, { t: 'presence.state', id: 11, users: [{ user: alice, online: true }] }, 'bob sees alice online at subscribe');
  bPhone.send({ t: 'typing', conv, state: 'typing' });
  await waitUntil(() => aPhone.frames.some((f) => f.t === 'typing.event' && f.user === bob && f.state === 'typing'), 'alice to see bob typing');
  t.same(
    aPhone.frames.find((f) => f.t === 'typing.event'),
    { t: 'typing.event', conv, user: bob, device: 'phone', state: 'typing' },
    'typing event names the conversation, user and device',
  );
  aPhone.send({ t: 'typing', conv, state: 'paused' });
  await waitUntil(() => bPhone.frames.some((f) => f.t === 'typing.event' && f.user === alice && f.state === 'paused'), 'bob to see alice pause');
  t.notOk(bPhone.frames.some((f) => f.t === 'typing.event' && f.user === bob), "bob's device never gets its own typing back");

  // carol is no member: she can neither watch the chat's typing nor type in it.
  const cPhone = await client(b, carol, 'phone');
  t.match(await cPhone.request({ t: 'presence.sub', id: 12, convs: [conv] }), { t: 'error', id: 12, code: 'not_member' }, 'a non-member cannot watch typing');
  cPhone.send({ t: 'typing', conv, state: 'typing' });
  await waitUntil(() => cPhone.frames.some((f) => f.t === 'error' && f.code === 'not_member' && f.id === undefined), 'carol to get not_member for typing');
  // Watching users is allowed, up to the cap (default 100): 101 more users is refused, nothing added.
  const many = Array.from({ length: 101 }, (_, i) => `u${i}.p1`);
  t.match(await cPhone.request({ t: 'presence.sub', id: 13, users: many }), { t: 'error', id: 13, code: 'too_many_watches', retry: false }, 'over the cap: too_many_watches');
  t.match(await cPhone.request({ t: 'presence.sub', id: 14, users: many.slice(0, 100) }), { t: 'presence.state', id: 14 }, 'exactly the cap is allowed');

  // bob leaves: alice hears offline with a last seen.
  bPhone.close();
  await waitUntil(() => aPhone.frames.some((f) => f.t === 'presence' && f.user === bob && !f.online), 'alice to see bob go offline');
  const again = await aPhone.request({ t: 'presence.sub', id: 15, users: [bob] });
  t.match(again, { t: 'presence.state', id: 15, users: [{ user: bob, online: false }] }, 'bob is offline at the next subscribe');
  t.ok(again.t === 'presence.state' && typeof again.users[0]!.lastSeen === 'number', 'and has a last seen');
});

t.test('embedded mode: presence and typing reach connections on the other shard thread of the node', async (t) => {
  const n = await startE2eNode(t, { name: 'embedded' });
  const node = { url: n.url, id: 'embedded' };
  const alice = n.user('alice');
  const bob = n.user('bob');
  const conv = directConversationId(alice, bob);
  const clients: RawClient[] = [];
  t.teardown(() => clients.forEach((c) => c.close()));
  // Connections spread over the 2 shard threads (SO_REUSEPORT); several watchers make it all but
  // certain that some sit on another thread than bob's connection.
  const watchers: RawClient[] = [];
  for (let i = 0; i < 6; i++) {
    const c = new RawClient(node, alice, `d${i}`, E2E_SECRET);
    clients.push(c);
    await c.open();
    t.match(await c.request({ t: 'presence.sub', id: 20, users: [bob], convs: [conv] }), { t: 'presence.state', users: [{ user: bob, online: false }] }, `${c.label} sees bob offline at subscribe`);
    watchers.push(c);
  }
  const bPhone = new RawClient(node, bob, 'phone', E2E_SECRET);
  clients.push(bPhone);
  await bPhone.open();
  await waitUntil(() => watchers.every((c) => c.frames.some((f) => f.t === 'presence' && f.user === bob && f.online)), 'every watcher to see bob online');
  bPhone.send({ t: 'typing', conv, state: 'typing' });
  await waitUntil(() => watchers.every((c) => c.frames.some((f) => f.t === 'typing.event' && f.user === bob)), 'every watcher to see bob typing');
  bPhone.close();
  await waitUntil(() => watchers.every((c) => c.frames.some((f) => f.t === 'presence' && f.user === bob && !f.online)), 'every watcher to see bob offline');
});
