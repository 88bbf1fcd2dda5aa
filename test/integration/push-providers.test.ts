/**
 * Each push provider against a local endpoint that checks the request's shape and authentication the
 * way the real service does: APNs over HTTP/2 with an ES256 provider JWT, FCM HTTP v1 behind an OAuth2
 * JWT-bearer token exchange, Web Push with VAPID and an aes128gcm body (decrypted here), a webhook
 * with an HMAC signature. The endpoints answer success, dead-token and transient errors by token.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpsServer, Agent, type Server } from 'node:https';
import { createSecureServer, type Http2SecureServer, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { exportPKCS8, exportSPKI, generateKeyPair, importJWK, importSPKI, jwtVerify, decodeProtectedHeader } from 'jose';
import t from 'tap';
import webpush from 'web-push';
import type { ActorLog } from '../../src/actors/log.js';
import { ApnsPushSender } from '../../src/jobs/push/providers/apns.js';
import { FCM_SCOPE, FcmPushSender } from '../../src/jobs/push/providers/fcm.js';
import { LogPushSender } from '../../src/jobs/push/providers/log.js';
import { WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WebhookPushSender } from '../../src/jobs/push/providers/webhook.js';
import { WebPushSender } from '../../src/jobs/push/providers/webpush.js';
import type { PushNotification } from '../../src/jobs/push/provider.js';
import { testCert } from '../support/push-tls.js';
import { decryptAes128gcm, makeSubscription, tokenOf } from '../support/push-webpush.js';

const tls = testCert();
const note = (token: string, badge = 3): PushNotification => ({ user: 'alice', device: 'phone', token, badge, collapseId: 'ticks-unread' });

function readBody(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

async function listen(server: Server | Http2SecureServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: Server | Http2SecureServer) => new Promise<void>((resolve) => server.close(() => resolve()));

t.test('APNs: HTTP/2, ES256 provider token, headers, dead tokens and retries', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const verifyKey = await importSPKI(await exportSPKI(publicKey), 'ES256');
  const KEY_ID = 'ABC123DEFG';
  const TEAM_ID = 'TEAM123456';
  const TOKENS = { ok: 'a'.repeat(64), gone: 'b'.repeat(64), bad: 'c'.repeat(64), busy: 'd'.repeat(64), stale: 'e'.repeat(64), topic: 'f'.repeat(64) };
  const seen: { token: string; jwt: string; headers: IncomingHttpHeaders; body: unknown; protocol: string }[] = [];
  const problems: string[] = [];
  let staleOnce = true;
  const server = createSecureServer({ key: tls.key, cert: tls.cert });
  server.on('stream', (stream, headers) => {
    void (async () => {
      const body = JSON.parse((await readBody(stream)).toString('utf8')) as unknown;
      const answer = (status: number, reason?: string) => {
        stream.respond({ ':status': status, 'content-type': 'application/json' });
        stream.end(reason ? JSON.stringify({ reason }) : undefined);
      };
      const path = String(headers[':path']);
      const m = /^\/3\/device\/([0-9a-f]+)$/.exec(path);
      if (headers[':method'] !== 'POST' || m === null) return answer(405, 'MethodNotAllowed');
      const auth = String(headers.authorization ?? '');
      const jwt = auth.replace(/^bearer /, '');
      try {
        const { payload, protectedHeader } = await jwtVerify(jwt, verifyKey, { algorithms: ['ES256'], issuer: TEAM_ID, requiredClaims: ['iat'] });
        if (protectedHeader.kid !== KEY_ID) throw new Error(`kid ${protectedHeader.kid}`);
        if (typeof payload.iat !== 'number') throw new Error('no iat');
      } catch (err) {
        problems.push(`jwt: ${(err as Error).message}`);
        return answer(403, 'InvalidProviderToken');
      }
      seen.push({ token: m[1]!, jwt, headers, body, protocol: stream.session?.alpnProtocol ?? '' });
      if (headers['apns-topic'] !== 'chat.ticks.app') return answer(400, 'BadTopic');
      switch (m[1]) {
        case TOKENS.gone:
          return answer(410, 'Unregistered');
        case TOKENS.bad:
          return answer(400, 'BadDeviceToken');
        case TOKENS.busy:
          return answer(503, 'ServiceUnavailable');
        case TOKENS.topic:
          return answer(400, 'TopicDisallowed');
        case TOKENS.stale:
          if (staleOnce) {
            staleOnce = false;
            return answer(403, 'ExpiredProviderToken');
          }
          return answer(200);
        default:
          return answer(200);
      }
    })();
  });
  const url = await listen(server);
  let now = Date.parse('2026-11-23T12:00:00Z');
  const sender = new ApnsPushSender({
    url,
    keyPem: await exportPKCS8(privateKey),
    keyId: KEY_ID,
    teamId: TEAM_ID,
    topic: 'chat.ticks.app',
    pushType: 'alert',
    alertLocKey: 'TICKS_NEW_MESSAGES',
    ttlS: 3600,
    timeoutMs: 5000,
    tokenRefreshMs: 50 * 60_000,
    ca: tls.cert,
    now: () => now,
  });
  t.teardown(async () => {
    await sender.close();
    await close(server);
  });

  t.same(await sender.send(note(TOKENS.ok, 7)), { outcome: 'sent' }, 'accepted');
  const first = seen.at(-1)!;
  t.equal(first.protocol, 'h2', 'spoken over HTTP/2');
  t.equal(first.headers['apns-push-type'], 'alert');
  t.equal(first.headers['apns-priority'], '10');
  t.equal(first.headers['apns-collapse-id'], 'ticks-unread');
  t.equal(first.headers['apns-expiration'], String(Math.floor(now / 1000) + 3600));
  t.same(first.body, { aps: { alert: { 'loc-key': 'TICKS_NEW_MESSAGES' }, badge: 7, sound: 'default' } }, 'content-free payload with the badge');

  t.same(await sender.send(note(TOKENS.gone)), { outcome: 'unregistered', reason: 'Unregistered' }, '410 is a dead token');
  t.same(await sender.send(note(TOKENS.bad)), { outcome: 'unregistered', reason: 'BadDeviceToken' }, '400 BadDeviceToken is a dead token');
  t.same(await sender.send(note(TOKENS.busy)), { outcome: 'retry', reason: 'ServiceUnavailable' }, '503 is retried');
  t.same(await sender.send(note(TOKENS.topic)), { outcome: 'error', reason: 'TopicDisallowed' }, 'another 400 is an error, not a dead token');
  const before = seen.length;
  t.same(await sender.send(note('not-hex/../../x')), { outcome: 'unregistered', reason: 'malformed_token' }, 'a malformed token never reaches the endpoint');
  t.equal(seen.length, before);

  const jwts = new Set(seen.map((s) => s.jwt));
  t.equal(jwts.size, 1, 'the provider token is cached across requests');
  now += 51 * 60_000;
  await sender.send(note(TOKENS.ok));
  t.not(seen.at(-1)!.jwt, first.jwt, 'and re-signed after tokenRefreshMs');
  const refreshed = seen.at(-1)!.jwt;
  t.same(await sender.send(note(TOKENS.stale)), { outcome: 'retry', reason: 'ExpiredProviderToken' }, 'an expired provider token is retried');
  t.same(await sender.send(note(TOKENS.stale)), { outcome: 'sent' }, 'the retry succeeds');
  t.not(seen.at(-1)!.jwt, refreshed, 'with a freshly signed token');
  t.same(problems, [], 'every provider token verified with the public key');

  const background = new ApnsPushSender({
    url, keyPem: await exportPKCS8(privateKey), keyId: KEY_ID, teamId: TEAM_ID, topic: 'chat.ticks.app', pushType: 'background',
    alertLocKey: 'X', ttlS: 60, timeoutMs: 5000, tokenRefreshMs: 50 * 60_000, ca: tls.cert,
  });
  t.same(await background.send(note(TOKENS.ok, 2)), { outcome: 'sent' });
  t.equal(seen.at(-1)!.headers['apns-push-type'], 'background');
  t.equal(seen.at(-1)!.headers['apns-priority'], '5');
  t.same(seen.at(-1)!.body, { aps: { 'content-available': 1, badge: 2 } });
  await background.close();

  const down = new ApnsPushSender({
    url: 'https://127.0.0.1:1', keyPem: await exportPKCS8(privateKey), keyId: KEY_ID, teamId: TEAM_ID, topic: 't', pushType: 'alert',
    alertLocKey: 'X', ttlS: 60, timeoutMs: 2000, tokenRefreshMs: 50 * 60_000, ca: tls.cert,
  });
  t.same(await down.send(note(TOKENS.ok)), { outcome: 'retry', reason: 'ECONNREFUSED' }, 'an unreachable APNs is retried');
  await down.close();
});

t.test('FCM HTTP v1: OAuth2 service-account exchange, cached token, dead tokens and retries', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const saKey = await importSPKI(await exportSPKI(publicKey), 'RS256');
  const CLIENT_EMAIL = 'ticks-push@proj-1.iam.gserviceaccount.com';
  let exchanges = 0;
  let issued = new Set<string>();
  const sends: { token: string; bearer: string; body: { message: Record<string, unknown> } }[] = [];
  const problems: string[] = [];
  let authOnce = true;
  let tokenUrl = '';
  const server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    void (async () => {
      const raw = (await readBody(req)).toString('utf8');
      const json = (status: number, v: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (req.url === '/token') {
        const form = new URLSearchParams(raw);
        try {
          if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') throw new Error('content-type');
          if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') throw new Error('grant_type');
          const assertion = form.get('assertion') ?? '';
          const { payload } = await jwtVerify(assertion, saKey, { algorithms: ['RS256'], issuer: CLIENT_EMAIL, audience: tokenUrl, requiredClaims: ['exp', 'iat'] });
          if (payload.scope !== FCM_SCOPE) throw new Error(`scope ${String(payload.scope)}`);
          if (payload.exp! - payload.iat! > 3600) throw new Error('assertion lives more than an hour');
        } catch (err) {
          problems.push(`assertion: ${(err as Error).message}`);
          return json(400, { error: 'invalid_grant' });
        }
        const token = `ya29.test-${++exchanges}`;
        issued.add(token);
        return json(200, { access_token: token, expires_in: 3600, token_type: 'Bearer' });
      }
      if (req.method !== 'POST' || req.url !== '/v1/projects/proj-1/messages:send') return json(404, { error: { status: 'NOT_FOUND', message: 'no such route' } });
      const bearer = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (!issued.has(bearer)) return json(401, { error: { status: 'UNAUTHENTICATED' } });
      const body = JSON.parse(raw) as { message: { token: string } & Record<string, unknown> };
      sends.push({ token: body.message.token, bearer, body });
      switch (body.message.token) {
        case 'gone':
          return json(404, { error: { status: 'NOT_FOUND', details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }] } });
        case 'unreg400':
          return json(400, { error: { status: 'INVALID_ARGUMENT', details: [{ errorCode: 'UNREGISTERED' }] } });
        case 'busy':
          return json(503, { error: { status: 'UNAVAILABLE' } });
        case 'bad-payload':
          return json(400, { error: { status: 'INVALID_ARGUMENT', details: [{ errorCode: 'INVALID_ARGUMENT' }] } });
        case 'revoke':
          if (authOnce) {
            authOnce = false;
            issued = new Set();
            return json(401, { error: { status: 'UNAUTHENTICATED' } });
          }
          return json(200, { name: 'projects/proj-1/messages/2' });
        default:
          return json(200, { name: 'projects/proj-1/messages/1' });
      }
    })();
  });
  const base = await listen(server);
  tokenUrl = `${base}/token`;
  const agent = new Agent({ ca: tls.cert });
  // The endpoint checks exp against the real clock, so the sender's clock starts at it.
  let now = Date.now();
  const sender = new FcmPushSender({
    serviceAccount: { project_id: 'proj-1', client_email: CLIENT_EMAIL, private_key: await exportPKCS8(privateKey), token_uri: tokenUrl },
    baseUrl: base,
    timeoutMs: 5000,
    agent,
    now: () => now,
  });
  t.teardown(async () => {
    agent.destroy();
    await close(server);
  });

  t.same(await sender.send(note('good', 4)), { outcome: 'sent' });
  t.same(sends[0]!.body.message, {
    token: 'good',
    data: { type: 'wake', badge: '4' },
    android: { priority: 'HIGH', collapse_key: 'ticks-unread' },
    apns: { headers: { 'apns-collapse-id': 'ticks-unread', 'apns-priority': '5' }, payload: { aps: { 'content-available': 1, badge: 4 } } },
  }, 'data-only, content-free message');
  t.same(await sender.send(note('gone')), { outcome: 'unregistered', reason: 'UNREGISTERED' }, '404 UNREGISTERED is a dead token');
  t.same(await sender.send(note('unreg400')), { outcome: 'unregistered', reason: 'UNREGISTERED' }, 'UNREGISTERED under another status too');
  t.same(await sender.send(note('busy')), { outcome: 'retry', reason: 'UNAVAILABLE' }, '503 is retried');
  t.same(await sender.send(note('bad-payload')), { outcome: 'error', reason: 'INVALID_ARGUMENT' }, 'INVALID_ARGUMENT is an error');
  t.equal(exchanges, 1, 'one token exchange served every send so far');
  t.same(await sender.send(note('revoke')), { outcome: 'retry', reason: 'UNAUTHENTICATED' }, 'a revoked access token is retried');
  t.same(await sender.send(note('revoke')), { outcome: 'sent' }, 'with a new one');
  t.equal(exchanges, 2);
  now += 3600_000;
  await sender.send(note('good'));
  t.equal(exchanges, 3, 'an expired access token is exchanged again');
  t.same(problems, [], 'every assertion verified with the service account public key');

  const concurrent = new FcmPushSender({
    serviceAccount: { project_id: 'proj-1', client_email: CLIENT_EMAIL, private_key: await exportPKCS8(privateKey), token_uri: tokenUrl },
    baseUrl: base, timeoutMs: 5000, agent,
  });
  const before = exchanges;
  const outcomes = await Promise.all(Array.from({ length: 5 }, () => concurrent.send(note('good'))));
  t.ok(outcomes.every((o) => o.outcome === 'sent'));
  t.equal(exchanges - before, 1, 'concurrent sends share one exchange');
});

t.test('Web Push: VAPID JWT, aes128gcm body, gone subscriptions and retries', async (t) => {
  const vapid = webpush.generateVAPIDKeys();
  const SUBJECT = 'mailto:ops@ticks.test';
  const received: { path: string; headers: Record<string, unknown>; body: Buffer }[] = [];
  const problems: string[] = [];
  const server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    void (async () => {
      const body = await readBody(req);
      const answer = (status: number) => {
        res.writeHead(status);
        res.end();
      };
      try {
        const m = /^vapid t=([^,]+), k=(.+)$/.exec(String(req.headers.authorization ?? ''));
        if (m === null) throw new Error(`authorization ${String(req.headers.authorization)}`);
        if (m[2] !== vapid.publicKey) throw new Error('k is not the VAPID public key');
        const raw = Buffer.from(m[2]!, 'base64url');
        const key = await importJWK({ kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33, 65).toString('base64url') }, 'ES256');
        if (decodeProtectedHeader(m[1]!).alg !== 'ES256') throw new Error('alg');
        const origin = `https://${String(req.headers.host)}`;
        const { payload } = await jwtVerify(m[1]!, key, { algorithms: ['ES256'], audience: origin, requiredClaims: ['exp', 'sub'] });
        if (payload.sub !== SUBJECT) throw new Error(`sub ${String(payload.sub)}`);
        if (req.headers['content-encoding'] !== 'aes128gcm') throw new Error('content-encoding');
      } catch (err) {
        problems.push((err as Error).message);
        return answer(403);
      }
      received.push({ path: req.url ?? '', headers: req.headers, body });
      const status = { '/sub/gone': 410, '/sub/missing': 404, '/sub/busy': 429, '/sub/huh': 400 }[req.url ?? ''] ?? 201;
      answer(status);
    })();
  });
  const base = await listen(server);
  const agent = new Agent({ ca: tls.cert });
  const sender = new WebPushSender({ vapidPublicKey: vapid.publicKey, vapidPrivateKey: vapid.privateKey, subject: SUBJECT, ttlS: 600, timeoutMs: 5000, agent });
  t.teardown(async () => {
    agent.destroy();
    await close(server);
  });

  const sub = makeSubscription(`${base}/sub/ok`);
  t.same(await sender.send(note(tokenOf(sub), 9)), { outcome: 'sent' });
  const got = received.at(-1)!;
  t.equal(got.headers.ttl, '600');
  t.equal(got.headers.urgency, 'high');
  t.match(got.headers.topic, /^[A-Za-z0-9_-]{1,32}$/, 'a Topic header collapses per user');
  t.same(JSON.parse(decryptAes128gcm(sub, got.body).toString('utf8')), { type: 'wake', badge: 9 }, 'the body decrypts with the subscription keys');

  for (const [path, expected] of [
    ['gone', { outcome: 'unregistered', reason: '410' }],
    ['missing', { outcome: 'unregistered', reason: '404' }],
    ['busy', { outcome: 'retry', reason: '429' }],
    ['huh', { outcome: 'error', reason: '400' }],
  ] as const) {
    t.same(await sender.send(note(tokenOf(makeSubscription(`${base}/sub/${path}`)))), expected, `answer of /sub/${path}`);
  }
  t.same(await sender.send(note('{"endpoint":"http://insecure/x","keys":{}}')), { outcome: 'unregistered', reason: 'malformed_subscription' });
  t.same(await sender.send(note(tokenOf(makeSubscription('https://127.0.0.1:1/sub'))))
    , { outcome: 'retry', reason: 'ECONNREFUSED' }, 'an unreachable push service is retried');
  t.same(problems, [], 'every request carried a valid VAPID JWT and aes128gcm');
  t.throws(() => new WebPushSender({ vapidPublicKey: 'nope', vapidPrivateKey: vapid.privateKey, subject: SUBJECT, ttlS: 1, timeoutMs: 1 }), 'bad VAPID keys fail at construction');
});

t.test('webhook: signed JSON POST, dead tokens and retries', async (t) => {
  const SECRET = 's'.repeat(40);
  const received: { body: Record<string, unknown> }[] = [];
  const problems: string[] = [];
  const server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    void (async () => {
      const raw = (await readBody(req)).toString('utf8');
      const ts = String(req.headers[WEBHOOK_TIMESTAMP_HEADER] ?? '');
      const sig = Buffer.from(String(req.headers[WEBHOOK_SIGNATURE_HEADER] ?? ''));
      const want = Buffer.from('v1=' + createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex'));
      if (sig.length !== want.length || !timingSafeEqual(sig, want)) {
        problems.push('bad signature');
        res.writeHead(401).end();
        return;
      }
      const body = JSON.parse(raw) as Record<string, unknown>;
      received.push({ body });
      const status = { gone: 410, busy: 502, nope: 422 }[String(body.token)] ?? 204;
      res.writeHead(status).end();
    })();
  });
  const base = await listen(server);
  const agent = new Agent({ ca: tls.cert });
  const sender = new WebhookPushSender({ url: `${base}/hook`, secret: SECRET, timeoutMs: 5000, agent, now: () => 1_800_000_000_000 });
  t.teardown(async () => {
    agent.destroy();
    await close(server);
  });
  t.same(await sender.send(note('tok-1', 5)), { outcome: 'sent' });
  t.same(received[0]!.body, { type: 'ticks.push', user: 'alice', device: 'phone', token: 'tok-1', badge: 5, collapseId: 'ticks-unread', ts: 1_800_000_000_000 });
  t.same(await sender.send(note('gone')), { outcome: 'unregistered', reason: '410' });
  t.same(await sender.send(note('busy')), { outcome: 'retry', reason: '502' });
  t.same(await sender.send(note('nope')), { outcome: 'error', reason: '422' });
  const forged = new WebhookPushSender({ url: `${base}/hook`, secret: 'x'.repeat(40), timeoutMs: 5000, agent });
  t.same(await forged.send(note('tok-1')), { outcome: 'error', reason: '401' }, 'the endpoint rejects a wrong signature');
  t.same(problems, ['bad signature'], 'only the forged request failed verification');
});

t.test('log provider writes the notification to the log', async (t) => {
  const lines: { obj: object; msg: string }[] = [];
  const log: ActorLog = { debug() {}, warn() {}, error() {}, info: (obj, msg) => lines.push({ obj, msg }) };
  t.same(await new LogPushSender(log).send(note('x', 2)), { outcome: 'sent' });
  t.same(lines, [{ obj: { user: 'alice', device: 'phone', badge: 2, collapseId: 'ticks-unread' }, msg: 'push (log provider)' }]);
});
