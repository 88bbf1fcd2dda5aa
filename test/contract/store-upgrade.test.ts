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
import t, { type Test } from 'tap';
import { MIGRATIONS, statements } from '../../src/store/scylla/cql.js';
import { migrate } from '../../src/store/scylla/migrations.js';
import { Session } from '../../src/store/scylla/session.js';
import { ScyllaStore } from '../../src/store/scylla/scylla-store.js';
import type { ScyllaStoreOptions } from '../../src/store/options.js';
import { uniqueKeyspace } from '../support/env.js';
import { scyllaTestOptions } from './store-engines.js';

/** A keyspace left at an older schema version, with one group conversation in it. */
interface OldKeyspace {
  opts: ScyllaStoreOptions;
  ks: string;
  conv: string;
  /** Runs a prepared CQL statement. */
  exec(cql: string, params: unknown[]): Promise<cassandra.types.ResultSet>;
  /** The columns of `table` as the schema has them now ([] when there is no such table). */
  columns(table: string): Promise<string[]>;
}

interface UpgradeCase {
  /** The version the keyspace is left at: the migrations up to it are run, no later one. */
  from: number;
  /** The version whose changes the case checks (open() then runs every later migration too). */
  to: number;
  /** The group conversation's members (user, role), written as rows of `from`. */
  members: [user: string, role: string][];
  /** Checks the old schema and writes what else the case reads back after the upgrade. */
  before?: (old: OldKeyspace) => Promise<void>;
}

/**
 * Leaves a fresh keyspace at version `from`, writes the conversation, its members and `before`'s
 * rows with plain CQL (as the code of that version did), then opens it with the current
 * ScyllaStore, which migrates it; checks that every migration is recorded.
 */
async function upgrade(t: Test, c: UpgradeCase): Promise<OldKeyspace & { store: ScyllaStore }> {
  if (!(c.from < c.to && MIGRATIONS.some((m) => m.version === c.to))) throw new Error(`no upgrade from version ${c.from} to ${c.to} to test`);
  const opts = scyllaTestOptions(uniqueKeyspace(`upg${c.from}${c.to}_${randomUUID().slice(0, 6)}`));
  const ks = opts.keyspace;
  const client = new cassandra.Client({ contactPoints: opts.contactPoints, localDataCenter: opts.localDataCenter, protocolOptions: { maxSchemaAgreementWaitSeconds: 30 } });
  await client.connect();
  t.teardown(() => client.shutdown());
  const exec = (cql: string, params: unknown[]): Promise<cassandra.types.ResultSet> => client.execute(cql, params, { prepare: true });
  const columns = async (table: string): Promise<string[]> =>
    (await exec('SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?', [ks, table])).rows.map((r) => String(r.get('column_name')));
  const old: OldKeyspace = { opts, ks, conv: `g-v${c.from}-${randomUUID().slice(0, 8)}`, exec, columns };

  await migrate(new Session(client, statements(ks), opts), MIGRATIONS.filter((m) => m.version <= c.from));
  await exec(`INSERT INTO ${ks}.conversations (id, kind, created_by, created_at, meta, epoch, members_ready) VALUES (?, 'group', 'alice', ?, {}, 0, true)`, [old.conv, new Date()]);
  for (const [user, role] of c.members) {
    await exec(`INSERT INTO ${ks}.members (conv, user_id, role, joined_at) VALUES (?, ?, ?, ?)`, [old.conv, user, role, new Date()]);
    await exec(`INSERT INTO ${ks}.user_conversations (user_id, conv, kind, role, joined_at) VALUES (?, ?, 'group', ?, ?)`, [user, old.conv, role, new Date()]);
  }
  await c.before?.(old);

  const store = new ScyllaStore(opts);
  await store.open();
  t.teardown(() => store.close());
  const versions = (await client.execute(`SELECT version FROM ${ks}.schema_migrations`)).rows.map((r) => Number(r.get('version'))).sort();
  t.same(versions, MIGRATIONS.map((m) => m.version).sort(), 'every migration is recorded');
  return { ...old, store };
}

t.test('scylla: a version-1 keyspace with messages is upgraded to messages.media and still reads back', async (t) => {
  t.equal(MIGRATIONS.filter((m) => m.version === 1).length, 1);
  // Version 1 as the code of the time left it: one conversation holding two messages.
  const { store, conv, columns, opts } = await upgrade(t, {
    from: 1,
    to: 2,
    members: [['alice', 'owner']],
    before: async ({ ks, conv, exec, columns }) => {
      t.notOk((await columns('messages')).includes('media'), 'version 1 has no messages.media');
      for (const seq of [1, 2]) {
        await exec(
          `INSERT INTO ${ks}.messages (conv, bucket, seq, message_id, sender_user, sender_device, client_msg_id, body, sent_at) VALUES (?, 0, ?, ?, 'alice', 'phone', ?, ?, ?)`,
          [conv, seq, `old-${seq}`, `cm-${seq}`, Buffer.from([seq]), new Date(1_700_000_000_000 + seq)],
        );
      }
      await exec(`UPDATE ${ks}.conv_heads USING TIMESTAMP 2 SET head = 2 WHERE conv = ?`, [conv]);
    },
  });

  // Migration 2 ran at open(): old rows read back without media.
  t.ok((await columns('messages')).includes('media'), 'open() added messages.media');
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
  t.equal((await columns('messages')).filter((c) => c === 'media').length, 1);
});

t.test('scylla: a version-2 keyspace with members is upgraded to join floors and departures', async (t) => {
  const { store, conv, columns } = await upgrade(t, {
    from: 2,
    to: 3,
    members: [['alice', 'owner'], ['bob', 'member']],
    before: async ({ columns }) => {
      t.notOk((await columns('members')).includes('from_seq'), 'version 2 has no members.from_seq');
      t.same(await columns('departures'), [], 'nor a departures table');
    },
  });

  t.ok((await columns('members')).includes('from_seq'), 'open() added members.from_seq');
  t.ok((await columns('user_conversations')).includes('from_seq'), 'and user_conversations.from_seq');
  t.ok((await columns('departures')).includes('left_seq'), 'and created departures');
  t.equal((await store.getMember(conv, 'bob'))?.fromSeq, 0, 'an old row reads back without a floor');
  t.match(await store.listUserConversations('bob'), [{ conversationId: conv, fromSeq: 0 }]);
  await store.putMember(conv, 'carol', 'member', Date.now(), 4);
  t.equal((await store.getMember(conv, 'carol'))?.fromSeq, 4, 'new rows carry their floor');
  await store.removeMember(conv, 'bob', { fromSeq: 0, leftSeq: 5 });
  t.same(await store.listDepartures('bob'), [{ conversationId: conv, kind: 'group', fromSeq: 0, leftSeq: 5 }]);
});
