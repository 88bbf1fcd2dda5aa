/**
 * The push path end to end, on both job runners, with two push services standing for two nodes: a
 * real embedded store holds conversations, read cursors and devices; pushes go through the webhook
 * provider to a local HTTPS endpoint that verifies the signature and answers per token.
 * Checks: collapse per user and window across nodes, the badge from heads and read cursors, dead
 * tokens removed, only transiently failed devices retried, nothing sent without tokens or unread.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { silentLog } from '../../src/actors/log.js';
import { unreadCount } from '../../src/jobs/push/badge.js';
import { WebhookPushSender } from '../../src/jobs/push/providers/webhook.js';
import { PushService } from '../../src/jobs/push/push-service.js';
import { registry } from '../../src/metrics/registry.js';
import { createMessageIdGenerator } from '../../src/protocol/ids.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import type { Store } from '../../src/store/store.js';
import { memoryCluster, redisCluster, type RunnerCluster } from '../support/push-runners.js';
import { testCert } from '../support/push-tls.js';

const SECRET = 'k'.repeat(40);
const WINDOW_MS = 10_000;
const tls = testCert();
const nextMid = createMessageIdGenerator();

interface Post {
  user: string;
  device: string;
  token: string;
  badge: number;
}

async function webhookEndpoint() {
  const posts: Post[] = [];
  const failedOnce = new Set<string>();
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const ts = String(req.headers['x-ticks-timestamp']);
      if (req.headers['x-ticks-signature'] !== 'v1=' + createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex')) {
        res.writeHead(401).end();
        return;
      }
      const p = JSON.parse(raw) as Post;
      posts.push({ user: p.user, device: p.device, token: p.token, badge: p.badge });
      if (p.token.endsWith('-gone')) return void res.writeHead(410).end();
      if (p.token.endsWith('-flaky') && !failedOnce.has(p.token)) {
        failedOnce.add(p.token);
        return void res.writeHead(503).end();
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, posts, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function send(store: Store, conv: string, from: string, n: number): Promise<void> {
  const w = await store.openWriter(conv, 1);
  await w.append(
    Array.from({ length: n }, (_, i) => ({
      messageId: nextMid(),
      senderUser: from,
      senderDevice: `${from}-dev`,
      clientMsgId: `${conv}-${Date.now()}-${i}-${Math.random()}`,
      body: new Uint8Array([1, 2, 3]),
      sentAtMs: Date.now(),
    })),
  );
}

function suite(cluster: RunnerCluster) {
  t.test(`push service: ${cluster.name}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ticks-push-'));
    const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 100, idempotencyTtlMs: 3_600_000 });
    await store.open();
    const hook = await webhookEndpoint();
    const agent = new Agent({ ca: tls.cert });
    t.teardown(async () => {
      await cluster.cleanup();
      await store.close();
      agent.destroy();
      await hook.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const run = `${cluster.name}${process.pid}`;
    const alice = `alice-${run}`;
    const bob = `bob-${run}`;
    const carol = `carol-${run}`;
    const [c1, c2] = [`g1-${run}`, `g2-${run}`];
    for (const c of [c1, c2]) {
      await store.createConversation({ id: c, kind: 'group', createdBy: bob, createdAtMs: Date.now(), members: [{ userId: alice, role: 'member' }, { userId: bob, role: 'owner' }, { userId: carol, role: 'member' }] });
    }
    await send(store, c1, bob, 3);
    await send(store, c2, bob, 2);
    await store.advanceRead(alice, c1, 1);
    await store.advanceRead(carol, c1, 3);
    await store.advanceRead(carol, c2, 2);

    t.equal(await unreadCount(store, alice), 4, 'badge: (3 - 1) + (2 - 0)');
    t.equal(await unreadCount(store, carol), 0, 'badge 0 when everything is read');
    t.equal(await unreadCount(store, `nobody-${run}`), 0, 'badge 0 for a user with no conversations');

    const devices: [string, string, 'webhook' | 'apns' | null, string | null][] = [
      [alice, 'phone', 'webhook', 'phone-ok'],
      [alice, 'tablet', 'webhook', 'tablet-flaky'],
      [alice, 'old', 'webhook', 'old-gone'],
      [alice, 'laptop', null, null],
      [alice, 'watch', 'apns', 'ab'.repeat(32)],
      [carol, 'phone', 'webhook', 'carol-ok'],
    ];
    for (const [user, device, provider, token] of devices) {
      await store.putDevice({ userId: user, deviceId: device, platform: 'ios', createdAtMs: Date.now() });
      if (token !== null) await store.setPushToken(user, device, provider, token);
    }

    // The clock the services cut windows with: 1 s before the end of window 5.
    let now = 6 * WINDOW_MS - 1000;
    const make = () =>
      new PushService({
        runner: cluster.node(),
        store,
        log: silentLog,
        senders: { webhook: new WebhookPushSender({ url: hook.url, secret: SECRET, timeoutMs: 5000, agent }) },
        collapseWindowMs: WINDOW_MS,
        concurrency: 4,
        attempts: 3,
        backoffMs: 100,
        work: true,
        now: () => now,
      });
    const nodeA = make();
    const nodeB = make();

    const results = [
      await nodeA.notify(alice, c1, 3),
      await nodeB.notify(alice, c2, 2),
      await nodeA.notify(alice, c2, 2),
    ];
    t.same(results, ['enqueued', 'collapsed', 'collapsed'], 'one push per user and window across nodes, then a trailing one');
    t.equal(await nodeA.queue.waitFinished(`push|${alice}|5`, 10_000), 'completed', 'the first push job completed (after a retry)');
    const lead = hook.posts.filter((p) => p.user === alice);
    t.same(
      lead.map((p) => `${p.device}:${p.badge}`).sort(),
      ['old:4', 'phone:4', 'tablet:4', 'tablet:4'],
      'every device with a webhook token got badge 4; only the flaky one was tried again',
    );
    const old = (await store.listDevices(alice)).find((d) => d.deviceId === 'old')!;
    t.equal(old.pushToken, null, 'the dead token was removed');
    t.equal(old.pushProvider, null);

    await send(store, c2, bob, 1);
    t.equal(await nodeB.queue.waitFinished(`push-t|${alice}|5`, 10_000), 'completed', 'the trailing push ran at the window end');
    const trailing = hook.posts.filter((p) => p.user === alice).slice(lead.length);
    t.same(trailing.map((p) => `${p.device}:${p.badge}`).sort(), ['phone:5', 'tablet:5'], 'the trailing push carries the new badge; the removed token is not used');

    now = 7 * WINDOW_MS;
    t.equal(await nodeB.notify(alice, c2, 3), 'enqueued', 'a new window gets a new push');
    await nodeB.queue.waitFinished(`push|${alice}|7`, 10_000);

    await store.advanceRead(carol, c2, 3); // carol has read everything, including the last message
    const before = hook.posts.length;
    t.equal(await nodeA.notify(carol, c1, 3), 'enqueued');
    await nodeA.queue.waitFinished(`push|${carol}|7`, 10_000);
    t.equal(await nodeA.notify(`nobody-${run}`, c1, 3), 'enqueued');
    await nodeA.queue.waitFinished(`push|nobody-${run}|7`, 10_000);
    t.equal(hook.posts.length, before, 'nothing is sent when nothing is unread or there is no token');

    const metrics = await registry.metrics();
    t.match(metrics, /ticks_push_sent_total\{provider="webhook",result="unregistered"\} [1-9]/);
    t.match(metrics, /ticks_push_sent_total\{provider="apns",result="unconfigured"\} [1-9]/, 'a device of an unconfigured provider is counted, not an exception');
    t.match(metrics, /ticks_push_jobs_total\{result="nothing_unread"\} [1-9]/);
    t.match(metrics, /ticks_push_jobs_total\{result="no_devices"\} [1-9]/);
    t.match(metrics, /ticks_push_notify_total\{result="collapsed"\} [1-9]/);
    t.match(metrics, /ticks_push_tokens_removed_total\{provider="webhook"\} [1-9]/);
  });
}

suite(memoryCluster());
suite(redisCluster('push'));
