import t from 'tap';
import { mintHs256Token } from '../../src/auth/mint.js';
import { createTokenVerifier } from '../../src/auth/token-verifier.js';
import { issuedBeforeRemoval, MemoryTombstones, tombstoneKeepMs, withTombstones } from '../../src/auth/tombstones.js';
import { settingsOf } from '../../src/auth/verify.js';
import { configSchema } from '../../src/config/schema.js';

const SECRET = 'unit-secret-'.padEnd(48, 'z');
const auth = configSchema.parse({ auth: { hs256Secret: SECRET, algorithms: ['HS256'] } }).auth;
const base = createTokenVerifier({ settings: settingsOf(auth), hs256Secret: SECRET });
const mint = (device: string, nowS: number): Promise<string> => mintHs256Token({ secret: SECRET, user: 'alice', device, ttlS: 3600, settings: auth, nowS });

t.test('a token must be issued in a later second than the removal', async (t) => {
  t.equal(issuedBeforeRemoval(undefined, 1_000), true, 'no iat: cannot show it is newer');
  t.equal(issuedBeforeRemoval(1, 1_000), true, 'iat in the second of the removal');
  t.equal(issuedBeforeRemoval(1, 1_999), true, 'iat in an earlier second');
  t.equal(issuedBeforeRemoval(2, 1_999), false, 'iat in the next second');
});

t.test('withTombstones refuses older tokens of a removed device only', async (t) => {
  const stones = new MemoryTombstones();
  const verify = withTombstones(base, stones);
  const nowS = Math.floor(Date.now() / 1000);
  const old = await mint('phone', nowS - 10);
  t.match(await verify(old), { ok: true, user: 'alice', device: 'phone', iat: nowS - 10 }, 'never removed: accepted, iat carried');
  await stones.put('alice', 'phone', (nowS - 5) * 1000);
  t.same(await verify(old), { ok: false, reason: 'removed' }, 'issued before the removal: removed');
  t.match(await verify(await mint('phone', nowS)), { ok: true, device: 'phone' }, 'issued after it: accepted');
  t.match(await verify(await mint('tablet', nowS - 10)), { ok: true, device: 'tablet' }, 'another device of the user: untouched');
  t.same(await verify(undefined), { ok: false, reason: 'missing' }, 'failures of the inner verifier pass through');
  const failing = withTombstones(base, { get: () => Promise.reject(new Error('store down')) });
  await t.rejects(failing(old), /store down/, 'a failed tombstone read rejects (the gateway closes with 4004, HTTP answers 503)');
});

t.test('a tombstone is kept as long as a token issued before it can verify, then dropped', async (t) => {
  t.equal(tombstoneKeepMs({ maxTokenLifetimeS: 3600, clockToleranceS: 5 }), 3_606_000, 'lifetime bound + clock tolerance + 1 s (iat resolution)');
  let now = Date.now();
  const keepMs = tombstoneKeepMs(auth);
  const stones = new MemoryTombstones(keepMs, () => now);
  const verify = withTombstones(base, stones);
  const nowS = Math.floor(now / 1000);
  const token = await mint('phone', nowS - 10);
  await stones.put('alice', 'phone', now);
  t.same(await verify(token), { ok: false, reason: 'removed' }, 'a younger tombstone refuses');
  now += keepMs - 1;
  t.same(await verify(token), { ok: false, reason: 'removed' }, 'still refuses one ms before it is dropped');
  now += 1;
  t.equal(await stones.get('alice', 'phone'), null, 'older than the bound: gone');
  t.match(await verify(token), { ok: true }, 'no longer refuses (this token still verifies only because the fake clock is not the verifier\'s)');
});
