/**
 * Device tombstones on both engines (embedded lmdb, scylla on real Cassandra), with a short token
 * lifetime bound: a tombstone is returned while it is younger than the bound plus the clock
 * tolerance (so it keeps refusing older tokens) and is gone after it (scylla: TTL; embedded:
 * dropped on read and swept, counted in ticks_devices_tombstones_pruned_total). Scylla rows written
 * before tombstones had a TTL get one from their removal time.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cassandra from 'cassandra-driver';
import t, { type Test } from 'tap';
import { EmbeddedTombstones } from '../../src/auth/embedded-tombstones.js';
import { mintHs256Token } from '../../src/auth/mint.js';
import { ScyllaTombstones } from '../../src/auth/scylla-tombstones.js';
import { createTokenVerifier } from '../../src/auth/token-verifier.js';
import { tombstoneKeepMs, withTombstones, type DeviceTombstones } from '../../src/auth/tombstones.js';
import { settingsOf } from '../../src/auth/verify.js';
import { configSchema } from '../../src/config/schema.js';
import { registry } from '../../src/metrics/registry.js';
import { scyllaOptionsOf } from '../../src/store/scylla/aux-tables.js';
import { waitFor } from '../support/cluster-contract.js';
import { requireCassandra, uniqueKeyspace } from '../support/env.js';

const SECRET = 'contract-secret-'.padEnd(48, 'z');
// Tokens live at most 4 s (tolerance 0): tombstones are kept 5 s.
const auth = configSchema.parse({ auth: { hs256Secret: SECRET, algorithms: ['HS256'], maxTokenLifetimeS: 4, clockToleranceS: 0 } }).auth;
const keepMs = tombstoneKeepMs(auth);
const verify = (stones: DeviceTombstones) => withTombstones(createTokenVerifier({ settings: settingsOf(auth), hs256Secret: SECRET }), stones);

async function pruned(): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'ticks_devices_tombstones_pruned_total');
  return Number(m?.values[0]?.value ?? 0);
}

/** Both engines: an old tombstone (removal keepMs - 1 s ago) goes, a new one stays and refuses. */
async function contract(t: Test, stones: DeviceTombstones): Promise<void> {
  const user = `u${randomUUID().slice(0, 8)}`;
  const nowS = Math.floor(Date.now() / 1000);
  await stones.put(user, 'old', Date.now() - keepMs + 1000);
  await stones.put(user, 'new', Date.now());
  t.ok((await stones.get(user, 'old')) !== null, 'a tombstone younger than the bound is returned');
  const token = await mintHs256Token({ secret: SECRET, user, device: 'new', ttlS: 4, settings: auth, nowS: nowS - 1 });
  t.same(await verify(stones)(token), { ok: false, reason: 'removed' }, 'and refuses a token issued before it');
  await waitFor('the old tombstone to be dropped', async () => (await stones.get(user, 'old')) === null, 30_000);
  t.ok((await stones.get(user, 'new')) !== null, 'the younger tombstone is still there');
  t.same(await verify(stones)(token), { ok: false, reason: 'removed' }, 'and still refuses');
  await waitFor('the new tombstone to be dropped', async () => (await stones.get(user, 'new')) === null, 30_000);
  t.pass('every tombstone is gone one bound plus tolerance after its removal');
}

t.test('embedded tombstones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-tombstones-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stones = new EmbeddedTombstones(join(dir, 'tombstones'), keepMs);
  await stones.open();
  t.teardown(() => stones.close());
  t.equal(stones.keepMs, 5000);
  await contract(t, stones);

  t.test('the sweep removes stale rows nobody reads, and counts them', async (t) => {
    let now = Date.now();
    const swept = new EmbeddedTombstones(join(dir, 'tombstones'), keepMs, () => now);
    await swept.open();
    t.teardown(() => swept.close());
    await swept.put('sam', 'a', now);
    await swept.put('sam', 'b', now + 2000);
    const before = await pruned();
    now += keepMs;
    t.equal(await swept.sweep(), 1, 'only the tombstone past the bound is removed');
    t.equal(await pruned(), before + 1, 'ticks_devices_tombstones_pruned_total counts it');
    now += 2000;
    t.equal(await swept.get('sam', 'b'), null, 'a read drops a stale row too');
    t.equal(await pruned(), before + 2);
    t.equal(await swept.sweep(), 0, 'nothing left');
  });
});

t.test('scylla tombstones', async (t) => {
  const cass = requireCassandra();
  const keyspace = uniqueKeyspace('tombstones');
  const store = configSchema.parse({
    store: { engine: 'scylla', scylla: { contactPoints: cass.contactPoints, localDataCenter: cass.localDataCenter, keyspace, requestTimeoutMs: 20_000, connectTimeoutMs: 10_000 } },
  }).store;
  const stones = new ScyllaTombstones(scyllaOptionsOf(store), keepMs);
  await stones.open();
  t.teardown(() => stones.close());
  await contract(t, stones);

  t.test('rows written without TTL get one from their removal time', async (t) => {
    const client = new cassandra.Client({ contactPoints: cass.contactPoints, localDataCenter: cass.localDataCenter, keyspace });
    await client.connect();
    t.teardown(() => client.shutdown());
    const user = `u${randomUUID().slice(0, 8)}`;
    const insert = 'INSERT INTO device_tombstones (user_id, device_id, removed_at) VALUES (?, ?, ?)';
    const ttlOf = async (device: string): Promise<number | null> => {
      const row = (await client.execute('SELECT TTL(removed_at) AS ttl FROM device_tombstones WHERE user_id = ? AND device_id = ?', [user, device], { prepare: true })).first();
      return row === null ? -1 : (row.get('ttl') as number | null);
    };
    await client.execute(insert, [user, 'stale', Date.now() - keepMs - 1000], { prepare: true });
    await client.execute(insert, [user, 'fresh', Date.now() - 1000], { prepare: true });
    t.equal(await ttlOf('fresh'), null, 'a legacy row has no TTL');
    t.equal(await stones.get(user, 'stale'), null, 'a legacy tombstone past the bound is not returned');
    t.equal(await ttlOf('stale'), -1, 'and is deleted');
    t.ok((await stones.get(user, 'fresh')) !== null, 'a legacy tombstone within the bound is returned');
    const ttl = await ttlOf('fresh');
    t.ok(ttl !== null && ttl >= 1 && ttl <= 5, `and now expires with the rest of the bound (TTL ${ttl})`);
    await waitFor('the rewritten legacy tombstone to expire', async () => (await stones.get(user, 'fresh')) === null, 30_000);
  });
});
