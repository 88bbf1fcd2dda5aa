/**
 * `PUT /push-token` and `DELETE /push-token` on a real node (2 shard threads, embedded store): the
 * answers a client gets for push disabled (503), a missing or bad JWT (401), a body over the limit
 * (413) and a bad provider or token (400, with the reason). That a registered token is stored and
 * used, and that DELETE removes it, is checked end to end in push-cluster.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type * as Tap from 'tap';
import { configSchema } from '../../src/config/schema.js';
import { startNode } from '../../src/node.js';
import { E2E_BUCKET_SIZE, E2E_SECRET, E2eNode } from '../support/e2e-node.js';

async function node(t: Tap.Test, pushEnabled: boolean): Promise<E2eNode> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-pushtoken-'));
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: process.env.TICKS_E2E_LOG ?? 'silent' },
    store: { engine: 'embedded', bucketSize: E2E_BUCKET_SIZE, embedded: { path: join(dir, 'store') } },
    gateway: { host: '127.0.0.1', port: 0, shards: 2 },
    auth: { hs256Secret: E2E_SECRET, algorithms: ['HS256'] },
    push: { enabled: pushEnabled },
  });
  const n = new E2eNode({ name: 'embedded' }, config, await startNode(config, { testHooks: true }), dir);
  t.teardown(async () => {
    await n.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return n;
}

async function call(n: E2eNode, method: 'PUT' | 'DELETE', auth: string | null, body?: string): Promise<{ status: number; json: { error?: string; message?: string } | null }> {
  const res = await fetch(`http://127.0.0.1:${n.node.port}/push-token`, {
    method,
    headers: auth === null ? {} : { authorization: `Bearer ${auth}` },
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? null : (JSON.parse(text) as { error?: string; message?: string }) };
}

t.test('push disabled: 503 push.disabled', async (t) => {
  const n = await node(t, false);
  const tok = await n.token('alice', 'phone');
  const put = await call(n, 'PUT', tok, '{"provider":"log","token":"abc"}');
  t.equal(put.status, 503);
  t.equal(put.json?.error, 'push.disabled');
  t.match(put.json?.message, /disabled/);
  t.equal((await call(n, 'DELETE', tok)).status, 503);
});

t.test('push enabled: 204 for good requests, 400/401/413 with a reason for bad ones', async (t) => {
  const n = await node(t, true);
  const tok = await n.token('alice', 'phone');
  const ok = await call(n, 'PUT', tok, '{"provider":"log","token":"alice-phone"}');
  t.equal(ok.status, 204, 'a device that never connected registers a token');
  t.equal(ok.json, null, 'no body');
  t.equal((await call(n, 'PUT', tok, '{"provider":"apns","token":"' + 'ab'.repeat(32) + '"}')).status, 204, 'replacing it with an APNs token');
  t.equal((await call(n, 'DELETE', tok)).status, 204, 'removing it');
  t.equal((await call(n, 'DELETE', tok)).status, 204, 'removing it again');

  const noAuth = await call(n, 'PUT', null, '{"provider":"log","token":"x"}');
  t.equal(noAuth.status, 401);
  t.match(noAuth.json?.message, /missing bearer token/);
  const badAuth = await call(n, 'DELETE', await n.token('alice', 'phone', { secret: 'wrong-secret-'.padEnd(48, 'y') }));
  t.equal(badAuth.status, 401, 'a token signed with another secret');

  const cases: [string, RegExp][] = [
    ['not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
    ['{"provider":"sms","token":"x"}', /push provider must be one of/],
    ['{"provider":"apns","token":"not-hex"}', /APNs device token/],
    ['{"provider":"webpush","token":"{}"}', /PushSubscription/],
    ['{"provider":"log"}', /non-empty string/],
  ];
  for (const [body, why] of cases) {
    const r = await call(n, 'PUT', tok, body);
    t.equal(r.status, 400, `400 for ${body}`);
    t.match(r.json?.message, why, `the reason: ${r.json?.message}`);
  }
  const big = await call(n, 'PUT', tok, JSON.stringify({ provider: 'log', token: 'x'.repeat(20_000) }));
  t.equal(big.status, 413, 'a body over the limit');

  const metrics = await (await fetch(`http://127.0.0.1:${n.node.port}/metrics`)).text();
  t.match(metrics, /ticks_push_token_requests_total\{[^}]*method="put"[^}]*status="400"[^}]*\} 6/, 'requests are counted by method and status');
});
