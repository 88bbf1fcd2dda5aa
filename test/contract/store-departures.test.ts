/**
 * Departure retention (retention.departuresS) on both engines: a departure is listed until its
 * retention has passed and then no longer (scylla: the row's TTL; embedded: skipped on read and
 * swept), while a departure still within its retention stays listed. Rows written before departures
 * had a retention (no TTL / no expiry) expire too, counted from when they were written (scylla) or
 * from the upgrade (embedded).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cassandra from 'cassandra-driver';
import { open } from 'lmdb';
import t from 'tap';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { ScyllaStore } from '../../src/store/scylla/scylla-store.js';
import type { ScyllaStoreOptions } from '../../src/store/options.js';
import type { Store } from '../../src/store/store.js';
import { waitFor } from '../support/cluster-contract.js';
import { requireCassandra, uniqueKeyspace } from '../support/env.js';
import { scyllaTestOptions } from './store-engines.js';

async function group(store: Store, users: string[]): Promise<string> {
  const id = `g-${randomUUID().slice(0, 8)}`;
  await store.createConversation({ id, kind: 'group', createdBy: users[0]!, createdAtMs: Date.now(), members: users.map((userId) => ({ userId, role: 'member' as const })) });
  return id;
}

const listed = async (store: Store, user: string): Promise<string[]> => (await store.listDepartures(user)).map((d) => d.conversationId).sort();

t.test('embedded: a departure is dropped once its retention has passed, a younger one stays (fake clock)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-departures-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let now = 1_000_000;
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000, departuresRetentionS: 10 }, { now: () => now });
  await store.open();
  t.teardown(() => store.close());
  const user = 'ann';
  const a = await group(store, [user, 'bob']);
  const b = await group(store, [user, 'bob']);
  await store.removeMember(a, user, { fromSeq: 1, leftSeq: 3 });
  now += 6_000;
  await store.removeMember(b, user, { fromSeq: 1, leftSeq: 4 });
  t.same(await listed(store, user), [a, b].sort(), 'both listed within their retention');

  now += 4_000; // a: exactly 10 s old
  t.same(await listed(store, user), [b], 'a departure as old as the retention is no longer listed, before any sweep');
  t.equal(await store.sweepDepartures(), 1, 'the sweep removes the expired row only');
  t.same(await listed(store, user), [b], 'the younger departure is still listed');
  t.equal(await store.sweepDepartures(), 0, 'nothing more to sweep');

  // A re-add clears b (and its index entry); a later removal records it again with a new expiry.
  await store.putMember(b, user, 'member', now, 5);
  t.same(await listed(store, user), []);
  now += 5_000;
  await store.removeMember(b, user, { fromSeq: 5, leftSeq: 9 });
  now += 9_000; // 14 s after b's first departure, 9 s after its second
  t.equal(await store.sweepDepartures(), 0, 'the index entry of the cleared departure removes nothing');
  t.same(await store.listDepartures(user), [{ conversationId: b, kind: 'group', fromSeq: 5, leftSeq: 9 }], 'the newer departure keeps its own retention');
  now += 1_000;
  t.same(await listed(store, user), [], 'and expires after it');
  t.equal(await store.sweepDepartures(), 1);
});

t.test('embedded: departures written before retention get a full window from the upgrade', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-departures-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  // The layout of schema version 1: a departure row without expiresAtMs.
  const env = open({ path, maxDbs: 32, useRecords: false } as Parameters<typeof open>[0]);
  await env.openDB({ name: 'meta' }).put('schema_version', 1);
  await env.openDB({ name: 'meta' }).put('layout', { bucketSize: 4 });
  await env.openDB({ name: 'departures' }).put(['ann', 'g-old'], { kind: 'group', fromSeq: 1, leftSeq: 2 });
  await env.close();

  let now = 5_000_000;
  const store = new EmbeddedStore({ path, bucketSize: 4, idempotencyTtlMs: 3_600_000, departuresRetentionS: 10 }, { now: () => now });
  await store.open();
  t.teardown(() => store.close());
  t.same(await store.listDepartures('ann'), [{ conversationId: 'g-old', kind: 'group', fromSeq: 1, leftSeq: 2 }], 'kept after the upgrade');
  now += 9_999;
  t.equal(await store.sweepDepartures(), 0, 'still within the window');
  now += 1;
  t.same(await store.listDepartures('ann'), [], 'gone one retention after the upgrade');
  t.equal(await store.sweepDepartures(), 1, 'and swept');
});

t.test('scylla: departures expire by TTL; a younger one stays; legacy rows get the TTL from their write time', async (t) => {
  const cass = requireCassandra();
  const keyspace = uniqueKeyspace('departures');
  const opts = (departuresRetentionS: number): ScyllaStoreOptions => ({
    ...scyllaTestOptions(keyspace),
    bucketSize: 4,
    departuresRetentionS,
  });
  // Two nodes over one keyspace, configured with different retentions: a row keeps the TTL of the
  // node that wrote it.
  const short = new ScyllaStore(opts(2));
  const long = new ScyllaStore(opts(3600));
  await short.open();
  await long.open();
  t.teardown(async () => {
    await short.close();
    await long.close();
  });
  const user = `u${randomUUID().slice(0, 8)}`;
  const a = await group(short, [user, 'bob']);
  const b = await group(short, [user, 'bob']);
  await short.removeMember(a, user, { fromSeq: 1, leftSeq: 3 });
  await long.removeMember(b, user, { fromSeq: 1, leftSeq: 4 });
  t.same(await listed(long, user), [a, b].sort(), 'both listed at first');
  await waitFor('the 2 s departure to expire', async () => (await listed(long, user)).length === 1, 30_000);
  t.same(await listed(short, user), [b], 'the departure written with a 3600 s retention is still listed');

  const client = new cassandra.Client({ contactPoints: cass.contactPoints, localDataCenter: cass.localDataCenter, keyspace });
  await client.connect();
  t.teardown(() => client.shutdown());
  const ttlOf = async (conv: string): Promise<number | null> => {
    const row = (await client.execute(`SELECT TTL(left_seq) AS ttl FROM departures WHERE user_id = ? AND conv = ?`, [user, conv], { prepare: true })).first();
    return row === null ? -1 : (row.get('ttl') as number | null);
  };
  t.ok((await ttlOf(b))! > 3000, 'the row carries its TTL');

  // Rows as the previous version wrote them: no TTL. One written 2 hours ago (past the 3600 s
  // retention), one a minute ago.
  const old = `g-old-${randomUUID().slice(0, 6)}`;
  const recent = await group(long, ['bob']);
  const insert = `INSERT INTO departures (user_id, conv, kind, from_seq, left_seq) VALUES (?, ?, 'group', 1, 2) USING TIMESTAMP ?`;
  const micros = (agoMs: number): cassandra.types.Long => cassandra.types.Long.fromNumber((Date.now() - agoMs) * 1000);
  await client.execute(insert, [user, old, micros(2 * 3600_000)], { prepare: true });
  await client.execute(insert, [user, recent, micros(60_000)], { prepare: true });
  t.equal(await ttlOf(recent), null, 'a legacy row has no TTL');
  t.same(await listed(long, user), [b, recent].sort(), 'the legacy row past the retention is not listed');
  t.equal(await ttlOf(old), -1, 'and was deleted');
  const ttl = await ttlOf(recent);
  t.ok(ttl !== null && ttl > 3400 && ttl <= 3540, `the recent legacy row now expires one retention after it was written (TTL ${ttl})`);
  await long.putMember(recent, user, 'member', Date.now(), 3);
  t.equal(await ttlOf(recent), -1, 'a re-add (a newer timestamp) still deletes the rewritten row');
});
