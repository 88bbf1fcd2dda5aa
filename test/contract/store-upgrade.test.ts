/**
 * Schema upgrades of the scylla engine on real Cassandra: a keyspace created and filled at an older
 * schema version is migrated by the current code at open(), and the rows written before read back.
 *
 * Version 2 added `messages.media` (list<text>): rows from version 1 have no such cell and read back
 * without media; new appends store media ids in the same table.
 * Version 3 added the join floor (`members.from_seq`, `user_conversations.from_seq`; older rows read
 * back as 0, no floor) and the `departures` table.
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

t.test('scylla: a version-2 keyspace with members is upgraded to join floors and departures', async (t) => {
  const cassandraEnv = requireCassandra();
  const opts: ScyllaStoreOptions = {
    contactPoints: cassandraEnv.contactPoints,
    localDataCenter: cassandraEnv.localDataCenter,
    keyspace: uniqueKeyspace(`upf${randomUUID().slice(0, 6)}`),
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

  // Version 3 added members.from_seq, user_conversations.from_seq and the departures table.
  await migrate(new Session(client, statements(ks), opts), MIGRATIONS.filter((m) => m.version <= 2));
  const columns = async (table: string): Promise<string[]> =>
    (await client.execute('SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?', [ks, table], { prepare: true })).rows.map((r) =>
      String(r.get('column_name')),
    );
  t.notOk((await columns('members')).includes('from_seq'), 'version 2 has no members.from_seq');
  t.same(await columns('departures'), [], 'nor a departures table');
  const conv = `g-floor-${randomUUID().slice(0, 8)}`;
  const q = { prepare: true };
  await client.execute(`INSERT INTO ${ks}.conversations (id, kind, created_by, created_at, meta, epoch, members_ready) VALUES (?, 'group', 'alice', ?, {}, 0, true)`, [conv, new Date()], q);
  for (const [user, role] of [['alice', 'owner'], ['bob', 'member']]) {
    await client.execute(`INSERT INTO ${ks}.members (conv, user_id, role, joined_at) VALUES (?, ?, ?, ?)`, [conv, user, role, new Date()], q);
    await client.execute(`INSERT INTO ${ks}.user_conversations (user_id, conv, kind, role, joined_at) VALUES (?, ?, 'group', ?, ?)`, [user, conv, role, new Date()], q);
  }

  const store = new ScyllaStore(opts);
  await store.open();
  t.teardown(() => store.close());
  t.ok((await columns('members')).includes('from_seq'), 'open() added members.from_seq');
  t.ok((await columns('user_conversations')).includes('from_seq'), 'and user_conversations.from_seq');
  t.ok((await columns('departures')).includes('left_seq'), 'and created departures');
  t.equal((await store.getMember(conv, 'bob'))?.fromSeq, 0, 'an old row reads back without a floor');
  t.match(await store.listUserConversations('bob'), [{ conversationId: conv, fromSeq: 0 }]);
  await store.putMember(conv, 'carol', 'member', Date.now(), 4);
  t.equal((await store.getMember(conv, 'carol'))?.fromSeq, 4, 'new rows carry their floor');
  await store.removeMember(conv, 'bob', { fromSeq: 0, leftSeq: 5 });
  t.same(await store.listDepartures('bob'), [{ conversationId: conv, kind: 'group', fromSeq: 0, leftSeq: 5 }]);
  const versions = (await client.execute(`SELECT version FROM ${ks}.schema_migrations`)).rows.map((r) => Number(r.get('version'))).sort();
  t.same(versions, MIGRATIONS.map((m) => m.version).sort(), 'every migration is recorded');
});
