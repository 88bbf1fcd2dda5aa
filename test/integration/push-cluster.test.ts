/**
 * Push in cluster mode, end to end: two node processes sharing the test Redis (directory, bus,
 * session registry, BullMQ jobs) and one Cassandra keyspace, the webhook provider pointed at a local
 * HTTP endpoint, tokens registered over `PUT /push-token`.
 *
 * A user actor only knows the devices attached on its own node; the conversation owner's fan-out
 * looks the receivers up in the session registry anyway (to reach their other nodes), and enqueues
 * no push job for a user with a live device on the other node. An offline user gets exactly one
 * push, with the token registered over HTTP; the user that was online gets one (to its offline
 * device's token) once its last session closed; after `DELETE /push-token` the user has no device
 * to push to.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import t from 'tap';
import { mintHs256Token } from '../../src/auth/mint.js';
import { RedisDirectory } from '../../src/cluster/directory/redis-directory.js';
import { RedisSessions } from '../../src/cluster/sessions/redis-sessions.js';
import { configSchema } from '../../src/config/schema.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { CLUSTER_SECRET, clusterSpec, startClusterNode, type ClusterNode, type ClusterSpec } from '../support/cluster-nodes.js';
import { waitUntil } from '../support/e2e-client.js';
import { requireRedisUrl } from '../support/env.js';

const spec = clusterSpec('push_cluster');
const settings = configSchema.parse({}).auth;
const jwt = (user: string, device: string): Promise<string> => mintHs256Token({ secret: CLUSTER_SECRET, user, device, ttlS: 3600, settings });

async function ownerOf(s: ClusterSpec, conv: string): Promise<string | null> {
  const redis = new Redis(requireRedisUrl(), { keyPrefix: s.keyPrefix, lazyConnect: true });
  try {
    await redis.connect();
    const owner = await new RedisDirectory({ redis, leaseMs: s.leaseMs }).lookup(`conv/${conv}`);
    return owner === null ? null : owner.node.replace(/\.\d+$/, '');
  } finally {
    redis.disconnect();
  }
}

/** The live devices of `user` in the cluster's session registry. */
async function liveDevices(s: ClusterSpec, user: string): Promise<string[]> {
  const redis = new Redis(requireRedisUrl(), { keyPrefix: s.keyPrefix, lazyConnect: true });
  try {
    await redis.connect();
    return (await new RedisSessions({ redis }).list(user)).map((e) => e.device);
  } finally {
    redis.disconnect();
  }
}

/** Sum of `<metric>{result=<result>}` over both nodes (a job runs on either). */
async function sumOf(nodes: ClusterNode[], metric: string, result: string): Promise<number> {
  let n = 0;
  for (const node of nodes) {
    const text = await node.metrics();
    for (const line of text.split('\n')) {
      const m = /^(\w+)\{([^}]*)\} (\d+(?:\.\d+)?)$/.exec(line);
      if (m && m[1] === metric && m[2]!.includes(`result="${result}"`)) n += Number(m[3]);
    }
  }
  return n;
}

const pushJobs = (nodes: ClusterNode[], result: string): Promise<number> => sumOf(nodes, 'ticks_push_jobs_total', result);
const wakeChecks = (nodes: ClusterNode[], result: string): Promise<number> => sumOf(nodes, 'ticks_push_wake_checks_total', result);

async function pushToken(node: ClusterNode, method: 'PUT' | 'DELETE', token: Promise<string> | null, body?: string): Promise<Response> {
  const auth = token === null ? null : await token;
  return fetch(`http://127.0.0.1:${node.port}/push-token`, {
    method,
    headers: { ...(auth === null ? {} : { authorization: `Bearer ${auth}` }), 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body }),
  });
}

t.test('a user online on another node gets no push; an offline user gets one', async (t) => {
  const posts: { user: string; device: string; token: string; badge: number }[] = [];
  const hook = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const p = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { user: string; device: string; token: string; badge: number };
      posts.push({ user: p.user, device: p.device, token: p.token, badge: p.badge });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((r) => hook.close(() => r())));
  const pushEnv = {
    TICKS_PUSH_ENABLED: 'true',
    TICKS_PUSH_WEBHOOK_URL: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
    TICKS_PUSH_WEBHOOK_SECRET: 'w'.repeat(32),
  };
  const [a, b] = await Promise.all([startClusterNode(t, spec, 'A', pushEnv), startClusterNode(t, spec, 'B', pushEnv)]);
  const nodes = [a, b];

  // Registration over HTTP on node A, for devices that have never connected: bad requests first.
  t.equal((await pushToken(a, 'PUT', null, '{"provider":"webhook","token":"x"}')).status, 401, 'no bearer token: 401');
  const badProvider = await pushToken(a, 'PUT', jwt('carol', 'phone'), '{"provider":"carrier-pigeon","token":"x"}');
  t.equal(badProvider.status, 400, 'unknown provider: 400');
  t.match(((await badProvider.json()) as { message: string }).message, /push provider must be one of/, 'the 400 says why');
  t.equal((await pushToken(a, 'PUT', jwt('carol', 'phone'), 'not json')).status, 400, 'body that is not JSON: 400');
  t.equal((await pushToken(a, 'PUT', jwt('carol', 'phone'), '{"provider":"webhook","token":""}')).status, 400, 'empty token: 400');
  t.equal((await pushToken(a, 'PUT', jwt('carol', 'phone'), '{"provider":"webhook","token":"carol-phone-token"}')).status, 204, 'carol registers');
  t.equal((await pushToken(b, 'PUT', jwt('dave', 'phone'), '{"provider":"webhook","token":"dave-phone-token"}')).status, 204, 'dave registers (on the other node)');
  t.equal((await pushToken(a, 'PUT', jwt('carol', 'tablet'), '{"provider":"webhook","token":"carol-tablet-token"}')).status, 204, 'carol registers her tablet too');

  // carol's phone is online on node B only (her tablet is offline); dave is offline; alice sends from node A.
  const carol = b.client('carol', 'phone');
  await carol.connect();
  const alice = a.client('alice', 'phone');
  await alice.connect();
  const toCarol = await alice.send({ to: 'carol' }, 'hi carol');
  t.equal(toCarol.conv, directConversationId('alice', 'carol'));
  t.equal(await ownerOf(spec, toCarol.conv), 'A', 'the conversation is owned by node A, where carol has no device');
  await waitUntil(() => carol.messages(toCarol.conv).length === 1, 'carol (node B) to get the message live');
  await waitUntil(async () => (await wakeChecks(nodes, 'online')) >= 1, "node A's fan-out to find carol online on node B");
  await alice.send({ to: 'dave' }, 'hi dave');

  await waitUntil(() => posts.some((p) => p.user === 'dave'), 'a push to dave', () => JSON.stringify(posts));
  t.equal(await wakeChecks(nodes, 'offline'), 1, 'the fan-out asked for one push: dave');
  t.equal(await pushJobs(nodes, 'online'), 0, 'no push job was enqueued for carol (none ran to find her online)');
  t.same(posts, [{ user: 'dave', device: 'phone', token: 'dave-phone-token', badge: 1 }], 'one push, to dave, with the token registered over HTTP');

  // Once carol's phone is gone from the registry, her offline tablet gets a push.
  carol.close();
  await waitUntil(async () => (await liveDevices(spec, 'carol')).length === 0, "carol's phone session to leave the registry");
  await alice.send({ to: 'carol' }, 'carol, you left');
  await waitUntil(() => posts.filter((p) => p.user === 'carol').length >= 2, 'pushes to both of carol’s devices', () => JSON.stringify(posts));
  t.same(
    posts
      .filter((p) => p.user === 'carol')
      .map((p) => ({ device: p.device, token: p.token, badge: p.badge }))
      .sort((x, y) => x.device.localeCompare(y.device)),
    [
      { device: 'phone', token: 'carol-phone-token', badge: 2 },
      { device: 'tablet', token: 'carol-tablet-token', badge: 2 },
    ],
    "once no device of carol's is live, every device of hers with a token is pushed (the tablet that never connected too)",
  );

  // DELETE removes dave's token: the next push job finds no device to send to.
  t.equal((await pushToken(a, 'DELETE', jwt('dave', 'phone'))).status, 204, 'dave removes his token');
  t.equal((await pushToken(a, 'DELETE', jwt('nobody', 'phone'))).status, 204, 'removing the token of an unknown device is a no-op');
  const noDevicesBefore = await pushJobs(nodes, 'no_devices');
  await alice.send({ to: 'dave' }, 'still there?');
  await waitUntil(async () => (await pushJobs(nodes, 'no_devices')) > noDevicesBefore, 'the next push job for dave to find no device');
  t.equal(posts.filter((p) => p.user === 'dave').length, 1, 'no push to dave after his token was removed');
});
