/**
 * Schema upgrades of the scylla engine on real Cassandra: a keyspace created and filled at an older
 * schema version is migrated by the current code at open(), and the rows written before read back.
 *
 * Version 2 added `messages.media` (list<text>): rows from version 1 have no such cell and read back
 * without media; new appends store media ids in the same table.
 */
import { randomUUID } from 'node:crypto';
import cassandra from 'cassandra-driver';
import t from 'tap';
import { MIGRATIONS, statements } from '../../src/store/scylla/cql.js';
import { migrate } from '../../src/store/scylla/migrations.js';
import { Session } from '../../src/store/scylla/session.js';
import { ScyllaStore } from '../../src/store/scylla/scylla-store.js';
import type { ScyllaStoreOptions } from '../../src/store/options.js';
import { requireCassandra, uniqueKeyspace } from '../support/env.js';

const BUCKET = 4;

t.test('scylla: a version-1 keyspace with messages is upgraded to messages.media and still reads back', async (t) => {
  const cassandraEnv = requireCassandra();
  const opts: ScyllaStoreOptions = {
    contactPoints: cassandraEnv.contactPoints,
    localDataCenter: cassandraEnv.localDataCenter,
    keyspace: uniqueKeyspace(`upg${randomUUID().slice(0, 6)}`),
    replication: { class: 'SimpleStrategy', replication_factor: '1' },
    readConsistency: 'localQuorum',
    writeConsistency: 'localQuorum',
    serialConsistency: 'localSerial',
    requestTimeoutMs: 20_000,
    connectTimeoutMs: 10_000,
    bucketSize: BUCKET,
    idempotencyTtlMs: 3_600_000,
  };
  const ks = opts.keyspace;
  const client = new cassandra.Client({ contactPoints: opts.contactPoints, localDataCenter: opts.localDataCenter, protocolOptions: { maxSchemaAgreementWaitSeconds: 30 } });
  await client.connect();
  t.teardown(() => client.shutdown());

  // The keyspace as version 1 of the code left it, with one conversation holding two messages.
  const v1 = MIGRATIONS.filter((m) => m.version === 1);
  t.equal(v1.length, 1);
  await migrate(new Session(client, statements(ks), opts), v1);
  const columns = async (): Promise<string[]> =>
    (await client.execute('SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?', [ks, 'messages'], { prepare: true })).rows.map((r) =>
      String(r.get('column_name')),
    );
  t.notOk((await columns()).includes('media'), 'version 1 has no messages.media');
  const conv = `g-upgrade-${randomUUID().slice(0, 8)}`;
  const q = { prepare: true };
  await client.execute(`INSERT INTO ${ks}.conversations (id, kind, created_by, created_at, meta, epoch, members_ready) VALUES (?, 'group', 'alice', ?, {}, 0, true)`, [conv, new Date()], q);
  await client.execute(`INSERT INTO ${ks}.members (conv, user_id, role, joined_at) VALUES (?, 'alice', 'owner', ?)`, [conv, new Date()], q);
  await client.execute(`INSERT INTO ${ks}.user_conversations (user_id, conv, kind, role, joined_at) VALUES ('alice', ?, 'group', 'owner', ?)`, [conv, new Date()], q);
  for (const seq of [1, 2]) {
    await client.execute(
      `INSERT INTO ${ks}.messages (conv, bucket, seq, message_id, sender_user, sender_device, client_msg_id, body, sent_at) VALUES (?, 0, ?, ?, 'alice', 'phone', ?, ?, ?)`,
      [conv, seq, `old-${seq}`, `cm-${seq}`, Buffer.from([seq]), new Date(1_700_000_000_000 + seq)],
      q,
    );
  }
  await client.execute(`UPDATE ${ks}.conv_heads USING TIMESTAMP 2 SET head = 2 WHERE conv = ?`, [conv], q);

  // The current code opens it: migration 2 runs, old rows read back without media.
  const store = new ScyllaStore(opts);
  await store.open();
  t.teardown(() => store.close());
  t.ok((await columns()).includes('media'), 'open() added messages.media');
  const versions = (await client.execute(`SELECT version FROM ${ks}.schema_migrations`)).rows.map((r) => Number(r.get('version'))).sort();
  t.same(versions, MIGRATIONS.map((m) => m.version).sort(), 'every migration is recorded');
  const old = await store.readForward(conv, 0, 10);
  t.same(old.messages.map((m) => [m.seq, m.messageId, m.media]), [[1, 'old-1', undefined], [2, 'old-2', undefined]], 'version-1 rows read back, without media');

  // A writer resumes on the upgraded table and stores media beside the old rows.
  const w = await store.openWriter(conv, 5);
  t.equal(w.head, 2);
  const id = 'c'.repeat(64);
  await w.append([{ messageId: 'new-3', senderUser: 'alice', senderDevice: 'phone', clientMsgId: 'cm-3', body: new Uint8Array([3]), sentAtMs: Date.now(), media: [id] }]);
  const all = await store.readBackward(conv, Number.MAX_SAFE_INTEGER, 10);
  t.same(all.messages.map((m) => [m.seq, m.media]), [[3, [id]], [2, undefined], [1, undefined]]);

  // Opening again is a no-op (the column exists, version 2 is recorded).
  const again = new ScyllaStore(opts);
  await again.open();
  await again.close();
  t.equal((await columns()).filter((c) => c === 'media').length, 1);
});
