/**
 * The delivery path wakes offline users: the actor layer (one shard, embedded store) with the real
 * PushService on the memory runner and the webhook provider against a local HTTPS endpoint. A
 * message to a user with no attached device produces a push with the unread badge; a user with a
 * device attached, and the sender's own messages, produce none.
 */
import { createServer, Agent } from 'node:https';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { silentLog } from '../../src/actors/log.js';
import { MemoryJobRunner } from '../../src/jobs/memory-runner.js';
import { WebhookPushSender } from '../../src/jobs/push/providers/webhook.js';
import { PushService } from '../../src/jobs/push/push-service.js';
import { testCert } from '../support/push-tls.js';
import { bytes, settle, until, World } from './actors-harness.js';

const tls = testCert();

t.test('a message to a user with no device online sends one content-free push with the badge', async (t) => {
  const posts: { user: string; device: string; badge: number }[] = [];
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const p = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { user: string; device: string; badge: number };
      posts.push({ user: p.user, device: p.device, badge: p.badge });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const agent = new Agent({ ca: tls.cert });
  const runner = new MemoryJobRunner();
  const notified: string[] = [];
  let push: PushService | null = null;
  const w = await new World(1, {}, {
    wake: {
      notify: (user: string, conv: string, seq: number) => {
        notified.push(`${user}:${conv}:${seq}`);
        return push!.notify(user, conv, seq);
      },
    },
  }).open();
  push = new PushService({
    runner,
    store: w.store,
    log: silentLog,
    senders: {
      webhook: new WebhookPushSender({ url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, secret: 's'.repeat(32), timeoutMs: 5000, agent }),
    },
    collapseWindowMs: 60_000,
    concurrency: 2,
    attempts: 2,
    backoffMs: 100,
    work: true,
  });
  t.teardown(async () => {
    await runner.close();
    await w.close();
    agent.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const bobPhone = w.device('bob', 'phone', 0).connect();
  await settle();
  await w.store.putDevice({ userId: 'alice', deviceId: 'phone', platform: 'ios', createdAtMs: Date.now() });
  await w.store.setPushToken('alice', 'phone', 'webhook', 'alice-phone-token');

  bobPhone.send({ t: 'send', id: 1, to: 'alice', cmid: 'm1', body: bytes('hello') });
  bobPhone.send({ t: 'send', id: 2, to: 'alice', cmid: 'm2', body: bytes('again') });
  await until(() => bobPhone.of('sent').length === 2, 'both sent');
  await until(() => posts.length === 1, 'a push to alice');
  t.same(posts, [{ user: 'alice', device: 'phone', badge: posts[0]!.badge }]);
  t.ok(posts[0]!.badge >= 1 && posts[0]!.badge <= 2, `badge counts the unread messages (${posts[0]!.badge})`);
  t.ok(notified.every((n) => n.startsWith('alice:d:alice:bob:')), `only alice, who has no device online, was notified (${notified.join(' ')})`);
  t.ok(notified.length >= 1 && notified.length <= 2, 'once per deliver (the two messages may share one)');

  const alicePhone = w.device('alice', 'phone', 0).connect();
  await settle();
  const before = notified.length;
  bobPhone.send({ t: 'send', id: 3, to: 'alice', cmid: 'm3', body: bytes('online now') });
  await until(() => alicePhone.msgs().length >= 1, 'delivered live');
  await settle();
  t.equal(notified.length, before, 'no push while a device of the user is attached');
});
