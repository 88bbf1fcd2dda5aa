import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type KeyObject } from 'jose';
import t from 'tap';
import { ensureDevSecret, resolveHs256Secret } from '../../src/auth/dev-secret.js';
import { mintHs256Token } from '../../src/auth/mint.js';
import { createTokenVerifier } from '../../src/auth/token-verifier.js';
import { createVerifyPool } from '../../src/auth/verify-pool.js';
import { loadPublicKeys, verifyJwt, type VerifySettings } from '../../src/auth/verify.js';
import { configSchema } from '../../src/config/schema.js';

const secret = 'x'.repeat(40);
const settings: VerifySettings = { algorithms: ['EdDSA', 'ES256', 'HS256'], issuer: 'ticks', audience: 'ticks', deviceClaim: 'dev', clockToleranceS: 5, maxTokenLifetimeS: 86_400 };
const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

type Claims = Record<string, unknown>;
const good: Claims = { sub: 'alice', dev: 'phone', iss: 'ticks', aud: 'ticks' };

async function sign(alg: string, key: CryptoKey | KeyObject | Uint8Array, claims: Claims, expIn: number | null = 3600): Promise<string> {
  const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg }).setIssuedAt();
  if (expIn !== null) jwt.setExpirationTime(now() + expIn);
  return jwt.sign(key);
}

const hsKey = new TextEncoder().encode(secret);
const hsVerify = createTokenVerifier({ settings, hs256Secret: secret });

t.test('a valid HS256 token is accepted with its user, device and exp', async (t) => {
  const token = await sign('HS256', hsKey, good);
  const out = await hsVerify(token);
  t.match(out, { ok: true, user: 'alice', device: 'phone' });
  t.ok(out.ok && out.exp > now());
});

t.test('HS256 rejections carry the right reason', async (t) => {
  t.same(await hsVerify(undefined), { ok: false, reason: 'missing' });
  t.same(await hsVerify(''), { ok: false, reason: 'missing' });
  t.same(await hsVerify('not.a.jwt'), { ok: false, reason: 'invalid' });
  t.same(await hsVerify(await sign('HS256', hsKey, good, -60)), { ok: false, reason: 'expired' }, 'expired beyond the tolerance');
  t.match(await hsVerify(await sign('HS256', hsKey, good, -2)), { ok: true }, 'expired within the clock tolerance');
  t.same(await hsVerify(await sign('HS256', hsKey, good, null)), { ok: false, reason: 'invalid' }, 'missing exp');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, aud: 'other' })), { ok: false, reason: 'invalid' }, 'wrong aud');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, iss: 'other' })), { ok: false, reason: 'invalid' }, 'wrong iss');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, dev: undefined })), { ok: false, reason: 'invalid' }, 'missing device claim');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, sub: undefined })), { ok: false, reason: 'invalid' }, 'missing sub');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, sub: 'a:b' })), { ok: false, reason: 'invalid' }, 'sub that is no user id');
  t.same(await hsVerify(await sign('HS256', hsKey, { ...good, dev: 'x'.repeat(65) })), { ok: false, reason: 'invalid' }, 'device that is no device id');
  const otherKey = new TextEncoder().encode('y'.repeat(40));
  t.same(await hsVerify(await sign('HS256', otherKey, good)), { ok: false, reason: 'invalid' }, 'bad signature');
  t.same(await hsVerify(await sign('HS256', otherKey, good, -60)), { ok: false, reason: 'invalid' }, 'expired with a bad signature is invalid, not expired');
  t.same(await hsVerify(await sign('HS512', new TextEncoder().encode('z'.repeat(64)), good)), { ok: false, reason: 'invalid' }, 'alg outside the allow-list');
  t.same(await hsVerify('x'.repeat(9000)), { ok: false, reason: 'invalid' }, 'oversized token');
});

t.test('token lifetime is bounded by auth.maxTokenLifetimeS: iat required, not in the future, exp - iat within it', async (t) => {
  const at = (iat: number | null, exp: number) => {
    const jwt = new SignJWT({ ...good }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp);
    if (iat !== null) jwt.setIssuedAt(iat);
    return jwt.sign(hsKey);
  };
  const n = now();
  t.match(await hsVerify(await at(n - 10, n - 10 + 86_400)), { ok: true, iat: n - 10 }, 'exactly the bound');
  t.same(await hsVerify(await at(n - 10, n - 10 + 86_401)), { ok: false, reason: 'lifetime' }, 'one second over the bound');
  t.same(await hsVerify(await at(null, n + 60)), { ok: false, reason: 'lifetime' }, 'no iat: the lifetime cannot be bounded');
  t.match(await hsVerify(await at(n + 4, n + 60)), { ok: true }, 'iat in the future within the clock tolerance');
  t.same(await hsVerify(await at(n + 60, n + 120)), { ok: false, reason: 'lifetime' }, 'iat in the future beyond the tolerance');
  t.same(await hsVerify(await at(n - 90_000, n - 60)), { ok: false, reason: 'expired' }, 'an expired token is expired, whatever its lifetime');
  const strict = createTokenVerifier({ settings: { ...settings, maxTokenLifetimeS: 60 }, hs256Secret: secret });
  t.same(await strict(await sign('HS256', hsKey, good)), { ok: false, reason: 'lifetime' }, 'an hour-long token against a one-minute bound');
  t.equal(configSchema.parse({}).auth.maxTokenLifetimeS, 30 * 86_400, 'default: 30 days');
  t.throws(() => configSchema.parse({ auth: { maxTokenLifetimeS: 0 } }), 'at least one second');
});

t.test('alg none is rejected', async (t) => {
  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...good, exp: now() + 60 })}.`;
  t.same(await hsVerify(none), { ok: false, reason: 'invalid' });
  t.same(await verifyJwt(none, 'HS256', [hsKey], settings), { ok: false, reason: 'invalid' }, 'even when forced down the HS256 path');
});

t.test('an algorithm removed from the allow-list is rejected', async (t) => {
  const only = createTokenVerifier({ settings: { ...settings, algorithms: ['EdDSA'] }, hs256Secret: secret });
  t.same(await only(await sign('HS256', hsKey, good)), { ok: false, reason: 'invalid' });
  t.same(await verifyJwt(await sign('HS256', hsKey, good), 'HS256', [hsKey], { ...settings, algorithms: ['ES256'] }), { ok: false, reason: 'invalid' });
});

t.test('the device claim name is configurable', async (t) => {
  const v = createTokenVerifier({ settings: { ...settings, deviceClaim: 'did' }, hs256Secret: secret });
  t.match(await v(await sign('HS256', hsKey, { ...good, dev: undefined, did: 'tab' })), { ok: true, device: 'tab' });
  t.same(await v(await sign('HS256', hsKey, good)), { ok: false, reason: 'invalid' });
});

t.test('EdDSA and ES256 tokens verify against configured public keys', async (t) => {
  const ed = await generateKeyPair('EdDSA', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const ed2 = await generateKeyPair('EdDSA', { extractable: true });
  const pems = [await exportSPKI(ed2.publicKey), await exportSPKI(ed.publicKey), await exportSPKI(ec.publicKey)];
  const keys = loadPublicKeys(pems, settings.algorithms);
  t.equal(keys.EdDSA.length, 2);
  t.equal(keys.ES256.length, 1);
  t.match(await verifyJwt(await sign('EdDSA', ed.privateKey, good), 'EdDSA', keys.EdDSA, settings), { ok: true, user: 'alice' }, 'second key of the algorithm');
  t.match(await verifyJwt(await sign('ES256', ec.privateKey, good), 'ES256', keys.ES256, settings), { ok: true, device: 'phone' });
  t.same(await verifyJwt(await sign('ES256', ec.privateKey, good, -60), 'ES256', keys.ES256, settings), { ok: false, reason: 'expired' });
  const stranger = await generateKeyPair('EdDSA');
  t.same(await verifyJwt(await sign('EdDSA', stranger.privateKey, good), 'EdDSA', keys.EdDSA, settings), { ok: false, reason: 'invalid' }, 'unknown key');
  t.same(await verifyJwt(await sign('EdDSA', ed.privateKey, { ...good, aud: 'x' }), 'EdDSA', keys.EdDSA, settings), { ok: false, reason: 'invalid' });
  t.throws(() => loadPublicKeys(['garbage'], settings.algorithms), /auth\.publicKeys\[0\] is not a PEM/);
  t.throws(() => loadPublicKeys(pems, ['ES256']), /auth\.publicKeys\[0\] is an EdDSA key but EdDSA is not in auth.algorithms/);
});

t.test('public-key tokens verify in the piscina pool and route through the shard verifier', async (t) => {
  const ed = await generateKeyPair('EdDSA', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const auth = configSchema.parse({ auth: { publicKeys: [await exportSPKI(ed.publicKey), await exportSPKI(ec.publicKey)] } }).auth;
  const pool = createVerifyPool(auth);
  t.teardown(() => pool.close());
  const v = createTokenVerifier({ settings, hs256Secret: secret, remote: (tok) => pool.verify(tok) });
  t.match(await v(await sign('EdDSA', ed.privateKey, good)), { ok: true, user: 'alice', device: 'phone' });
  t.match(await v(await sign('ES256', ec.privateKey, good)), { ok: true });
  t.same(await v(await sign('ES256', ec.privateKey, good, -60)), { ok: false, reason: 'expired' });
  t.same(await v(await sign('EdDSA', ed.privateKey, { ...good, iss: 'evil' })), { ok: false, reason: 'invalid' });
  const noRemote = createTokenVerifier({ settings, hs256Secret: secret });
  t.same(await noRemote(await sign('EdDSA', ed.privateKey, good)), { ok: false, reason: 'invalid' }, 'no pool, no public-key tokens');
  const noSecret = createTokenVerifier({ settings });
  t.same(await noSecret(await sign('HS256', hsKey, good)), { ok: false, reason: 'invalid' }, 'no secret, no HS256 tokens');
});

t.test('minted tokens verify; the dev secret is created once with mode 0600', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = configSchema.parse({ dataDir: dir, auth: { devTokens: true } });
  t.equal(resolveHs256Secret(cfg, { create: false }), undefined, 'not created by a read');
  const a = ensureDevSecret(dir);
  const b = resolveHs256Secret(cfg, { create: true });
  t.ok(a.created);
  t.equal(b?.secret, a.secret);
  t.equal(b?.created, false);
  t.equal(statSync(a.path).mode & 0o777, 0o600);
  t.equal(readFileSync(a.path, 'utf8').trim(), a.secret);
  t.equal(resolveHs256Secret(configSchema.parse({ dataDir: dir }), { create: true }), undefined, 'devTokens off: no secret');
  t.equal(resolveHs256Secret(configSchema.parse({ auth: { hs256Secret: secret } }), { create: true })?.source, 'config');
  const token = await mintHs256Token({ secret: a.secret, user: 'alice', device: 'phone', ttlS: 60, settings });
  t.match(await createTokenVerifier({ settings, hs256Secret: a.secret })(token), { ok: true, user: 'alice', device: 'phone' });
  await t.rejects(mintHs256Token({ secret: a.secret, user: 'a b', device: 'phone', ttlS: 60, settings }), /invalid user id/);
});
