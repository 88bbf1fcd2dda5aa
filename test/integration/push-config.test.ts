/**
 * Push and jobs configuration: environment variables reach the push section, incomplete provider
 * settings fail at start with the key named, and createJobs picks BullMQ when the cluster has a
 * Redis and the memory runner otherwise (and a queued flush works through either).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportPKCS8, generateKeyPair } from 'jose';
import t from 'tap';
import webpush from 'web-push';
import { silentLog } from '../../src/actors/log.js';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { createJobs, createSenders } from '../../src/jobs/create-jobs.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

const base = () => configSchema.parse({});

t.test('environment variables reach the push and jobs sections', async (t) => {
  const cfg = loadConfig({
    file: null,
    env: { TICKS_PUSH_COLLAPSE_WINDOW_MS: '5000', TICKS_PUSH_APNS_PUSH_TYPE: 'background', TICKS_JOBS_FLUSH_MAX_PER_WINDOW: '7', TICKS_PUSH_WEBHOOK_URL: 'https://hooks.example/ticks' },
    warn: () => {},
  });
  t.equal(cfg.push.collapseWindowMs, 5000);
  t.equal(cfg.push.apns.pushType, 'background');
  t.equal(cfg.jobs.flushMaxPerWindow, 7);
  t.equal(cfg.push.webhook.url, 'https://hooks.example/ticks');
  t.throws(() => loadConfig({ file: null, env: { TICKS_PUSH_COLLAPSE_WINDOW_MS: '10' }, warn: () => {} }), /push\.collapseWindowMs/);
});

t.test('incomplete provider settings fail at start, naming the key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-push-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const p8 = join(dir, 'key.p8');
  writeFileSync(p8, await exportPKCS8(privateKey));
  const push = base().push;

  t.throws(() => createSenders({ ...push, apns: { ...push.apns, keyFile: p8 } }, silentLog), /push\.apns: keyId, teamId and topic are required/);
  t.throws(() => createSenders({ ...push, apns: { ...push.apns, keyFile: join(dir, 'missing.p8'), keyId: 'ABCDEFGHIJ', teamId: 'ABCDEFGHIJ', topic: 'x' } }, silentLog), /push\.apns\.keyFile: cannot read .*ENOENT/);
  t.throws(() => createSenders({ ...push, webhook: { url: 'https://h.example' } }, silentLog), /push\.webhook\.secret is required/);
  t.throws(() => createSenders({ ...push, webpush: { ...push.webpush, vapidPublicKey: 'x' } }, silentLog), /push\.webpush: set both/);
  writeFileSync(join(dir, 'sa.json'), '{"project_id":"p"}');
  t.throws(() => createSenders({ ...push, fcm: { ...push.fcm, serviceAccountFile: join(dir, 'sa.json') } }, silentLog), /push\.fcm\.serviceAccountFile .*no client_email/);

  const vapid = webpush.generateVAPIDKeys();
  const all = createSenders(
    {
      ...push,
      apns: { ...push.apns, keyFile: p8, keyId: 'ABCDEFGHIJ', teamId: 'ABCDEFGHIJ', topic: 'chat.ticks' },
      webpush: { ...push.webpush, vapidPublicKey: vapid.publicKey, vapidPrivateKey: vapid.privateKey },
      webhook: { url: 'https://h.example', secret: 'x'.repeat(32) },
    },
    silentLog,
  );
  t.same(Object.keys(all).sort(), ['apns', 'log', 'webhook', 'webpush'], 'complete settings enable their providers');
  await Promise.all(Object.values(all).map((s) => s.close()));
});

t.test('createJobs: memory without a cluster Redis, BullMQ with one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-push-jobs-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 100, idempotencyTtlMs: 3_600_000 });
  await store.open();
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const cfg = base();
  const embedded = createJobs({ config: cfg, store, log: silentLog, shardCount: 2, name: 'n1-0' });
  t.equal(embedded.runner.impl, 'memory');
  t.ok(embedded.push !== null, 'push is on by default');
  t.same(await embedded.flush.schedule({ user: 'u', device: 'd', session: 's', backlog: cfg.jobs.flushInlineMaxMessages + 1 }).then((p) => p.mode), 'queued');
  await embedded.close();

  const prefix = uniqueRedisPrefix('pushcfg');
  const clustered = createJobs({
    config: { ...cfg, cluster: { ...cfg.cluster, redisUrl: requireRedisUrl(), keyPrefix: prefix }, push: { ...cfg.push, enabled: false } },
    store,
    log: silentLog,
    shardCount: 2,
    name: 'n1-0',
  });
  t.equal(clustered.runner.impl, 'redis');
  t.equal(clustered.push, null, 'push.enabled false: no push service');
  t.same(await clustered.flush.schedule({ user: 'u', device: 'd', session: 's', backlog: cfg.jobs.flushInlineMaxMessages + 1 }).then((p) => p.mode), 'queued');
  await clustered.close();
  const { Redis } = await import('ioredis');
  const admin = new Redis(requireRedisUrl());
  const keys = await admin.keys(`${prefix}jobs:*`);
  t.ok(keys.some((k) => k.startsWith(`${prefix}jobs:flush:`)), 'queues live under <cluster.keyPrefix>jobs');
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

t.test('checkPushToken accepts each provider\'s token shape and names what is wrong', async (t) => {
  const { checkPushToken } = await import('../../src/jobs/push/tokens.js');
  t.equal(checkPushToken('apns', 'ab'.repeat(32)), null);
  t.equal(checkPushToken('fcm', 'dGVzdA:APA91b' + 'x'.repeat(100)), null);
  t.equal(checkPushToken('webpush', JSON.stringify({ endpoint: 'https://push.example/x', keys: { p256dh: 'a', auth: 'b' } })), null);
  t.equal(checkPushToken('webhook', 'device-123'), null);
  t.match(checkPushToken('apns', 'xyz'), /hex/);
  t.match(checkPushToken('fcm', 'has spaces in it but long enough'), /FCM/);
  t.match(checkPushToken('webpush', '{"endpoint":"http://x"}'), /https endpoint/);
  t.match(checkPushToken('sms', 'x'), /one of apns, fcm, webpush, webhook, log/);
  t.match(checkPushToken('log', 'x'.repeat(5000)), /at most 4096 bytes/);
});
