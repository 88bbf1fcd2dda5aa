/**
 * Every CQL string of the scylla engine: the versioned schema and the statements. Nothing else in
 * the engine writes CQL text.
 *
 * Only CQL that both ScyllaDB (production) and Apache Cassandra 5 (tests) accept: no SAI/SASI, no
 * UnifiedCompactionStrategy, no `ALTER ... ADD IF NOT EXISTS` / `ALTER TABLE IF EXISTS`, no
 * materialized views, no `USING TIMEOUT` / `BYPASS CACHE`, no `tablets` keyspace option. Compaction
 * is left at each server's default.
 *
 * Table names are qualified with the keyspace, which is validated against KEYSPACE_PATTERN before it
 * is interpolated. Values always travel as bind markers.
 *
 * CUSTOM TIMESTAMPS. `conv_heads.head`, `retention.retained_from`, `delivered_cursors.seq` and
 * `read_cursors.seq` are written `USING TIMESTAMP <the value itself>`, so the highest value wins
 * whatever order concurrent or retried writes land in, without LWT. These cells must never be written
 * or deleted with a normal (wall-clock, about 1.7e15 µs) timestamp: such a write or tombstone would
 * shadow every later monotonic write for ever. That is why nothing here deletes those rows.
 *
 * FENCING. `messages.epoch` is a static column: the epoch of the writer allowed to append to that
 * (conversation, bucket) partition. It is only ever changed by LWT (see RETIRED_EPOCH in log.ts for
 * trimmed buckets), so every change is linearized with the fenced append batches.
 */

export const KEYSPACE_PATTERN = /^[a-z][a-z0-9_]{0,47}$/;

/** One schema step: idempotent DDL, or an ADD COLUMN that is skipped when the column exists. */
export type MigrationStep =
  | { kind: 'ddl'; cql: (ks: string) => string }
  | { kind: 'add_column'; table: string; column: string; type: string };

export interface Migration {
  version: number;
  description: string;
  steps: MigrationStep[];
}

const ddl = (cql: (ks: string) => string): MigrationStep => ({ kind: 'ddl', cql });

/** Append only: never edit a released migration, add a new version instead. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'initial schema',
    steps: [
      // members_ready is set (plain write, never by LWT) once the initial members are written, so a
      // retried createConversation can finish a half-done creation.
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.conversations (
        id text PRIMARY KEY, kind text, created_by text, created_at timestamp,
        meta map<text, text>, epoch bigint, members_ready boolean)`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.members (
        conv text, user_id text, role text, joined_at timestamp,
        PRIMARY KEY ((conv), user_id))`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.user_conversations (
        user_id text, conv text, kind text, role text, joined_at timestamp,
        PRIMARY KEY ((user_id), conv))`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.messages (
        conv text, bucket bigint, seq bigint, epoch bigint STATIC,
        message_id text, sender_user text, sender_device text, client_msg_id text,
        body blob, sent_at timestamp,
        PRIMARY KEY ((conv, bucket), seq)) WITH CLUSTERING ORDER BY (seq ASC)`),
      // Rows only ever expire by TTL, identically on every replica, so tombstones can go early.
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.idempotency (
        conv text, sender_device text, client_msg_id text, seq bigint, message_id text,
        PRIMARY KEY ((conv), sender_device, client_msg_id)) WITH gc_grace_seconds = 10800`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.conv_heads (conv text PRIMARY KEY, head bigint)`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.retention (conv text PRIMARY KEY, retained_from bigint)`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.delivered_cursors (
        user_id text, device_id text, conv text, seq bigint,
        PRIMARY KEY ((user_id, device_id), conv))`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.read_cursors (
        user_id text, conv text, seq bigint, PRIMARY KEY ((user_id), conv))`),
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.devices (
        user_id text, device_id text, platform text, push_provider text, push_token text,
        created_at timestamp, PRIMARY KEY ((user_id), device_id))`),
    ],
  },
  {
    version: 2,
    description: 'messages.media: the media ids a message refers to',
    // Null for every earlier row, which reads back as "no media". Written only when a message has
    // media (an unset bind otherwise), so rows without media carry no cell and no tombstone.
    steps: [{ kind: 'add_column', table: 'messages', column: 'media', type: 'list<text>' }],
  },
  {
    version: 3,
    description: 'join floors (members/user_conversations.from_seq) and the departures table',
    // from_seq is null for every earlier row, which reads back as 0 (no floor: the whole log).
    // departures is written and deleted with normal timestamps only: a row rewritten with a TTL keeps
    // the (wall-clock) timestamp it was written with, never a custom one.
    steps: [
      { kind: 'add_column', table: 'members', column: 'from_seq', type: 'bigint' },
      { kind: 'add_column', table: 'user_conversations', column: 'from_seq', type: 'bigint' },
      ddl((ks) => `CREATE TABLE IF NOT EXISTS ${ks}.departures (
        user_id text, conv text, kind text, from_seq bigint, left_seq bigint,
        PRIMARY KEY ((user_id), conv))`),
    ],
  },
];

/** Bootstrap DDL run before the migrations themselves (both idempotent). */
export const bootstrapCql = {
  createKeyspace: (ks: string, replication: Record<string, string>): string => {
    const pairs = Object.entries(replication).map(([k, v]) => `'${k}': '${v}'`);
    return `CREATE KEYSPACE IF NOT EXISTS ${ks} WITH replication = {${pairs.join(', ')}}`;
  },
  createMigrationsTable: (ks: string): string =>
    `CREATE TABLE IF NOT EXISTS ${ks}.schema_migrations (
      version int PRIMARY KEY, description text, applied_at timestamp)`,
  /** A short-lived (TTL) lock so that nodes starting together run DDL one at a time. */
  createLockTable: (ks: string): string =>
    `CREATE TABLE IF NOT EXISTS ${ks}.schema_lock (name text PRIMARY KEY, owner text, acquired_at timestamp)`,
  addColumn: (ks: string, table: string, column: string, type: string): string =>
    `ALTER TABLE ${ks}.${table} ADD ${column} ${type}`,
  columnExists: 'SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?',
  appliedVersions: (ks: string): string => `SELECT version FROM ${ks}.schema_migrations`,
  recordVersion: (ks: string): string =>
    `INSERT INTO ${ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)`,
  acquireLock: (ks: string): string =>
    `INSERT INTO ${ks}.schema_lock (name, owner, acquired_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?`,
  releaseLock: (ks: string): string => `DELETE FROM ${ks}.schema_lock WHERE name = ? IF owner = ?`,
};

/** The statements of the running engine, qualified with the keyspace. */
export function statements(ks: string) {
  return {
    // conversations
    insertConversation: `INSERT INTO ${ks}.conversations (id, kind, created_by, created_at, meta, epoch)
      VALUES (?, ?, ?, ?, ?, 0) IF NOT EXISTS`,
    selectConversation: `SELECT id, kind, created_by, created_at, meta, members_ready FROM ${ks}.conversations WHERE id = ?`,
    markMembersReady: `UPDATE ${ks}.conversations SET members_ready = true WHERE id = ?`,
    updateMeta: `UPDATE ${ks}.conversations SET meta = ? WHERE id = ? IF EXISTS`,
    raiseConversationEpoch: `UPDATE ${ks}.conversations SET epoch = ? WHERE id = ? IF epoch < ?`,
    selectConversationEpoch: `SELECT epoch FROM ${ks}.conversations WHERE id = ?`,

    // membership
    insertMember: `INSERT INTO ${ks}.members (conv, user_id, role, joined_at, from_seq) VALUES (?, ?, ?, ?, ?)`,
    deleteMember: `DELETE FROM ${ks}.members WHERE conv = ? AND user_id = ?`,
    selectMember: `SELECT conv, user_id, role, joined_at, from_seq FROM ${ks}.members WHERE conv = ? AND user_id = ?`,
    listMembers: `SELECT conv, user_id, role, joined_at, from_seq FROM ${ks}.members WHERE conv = ? AND user_id > ? LIMIT ?`,
    insertUserConversation: `INSERT INTO ${ks}.user_conversations (user_id, conv, kind, role, joined_at, from_seq)
      VALUES (?, ?, ?, ?, ?, ?)`,
    deleteUserConversation: `DELETE FROM ${ks}.user_conversations WHERE user_id = ? AND conv = ?`,
    listUserConversations: `SELECT conv, kind, role, joined_at, from_seq FROM ${ks}.user_conversations WHERE user_id = ?`,
    /** Kept retention.departuresS (the TTL), then gone on every replica alike. */
    insertDeparture: `INSERT INTO ${ks}.departures (user_id, conv, kind, from_seq, left_seq) VALUES (?, ?, ?, ?, ?) USING TTL ?`,
    deleteDeparture: `DELETE FROM ${ks}.departures WHERE user_id = ? AND conv = ?`,
    /** left_ttl is null for rows written before departures had a TTL (see Conversations.listDepartures). */
    listDepartures: `SELECT conv, kind, from_seq, left_seq, TTL(left_seq) AS left_ttl, WRITETIME(left_seq) AS left_at
      FROM ${ks}.departures WHERE user_id = ?`,
    /**
     * A row written without TTL, rewritten with one at its own write time: a later write or delete of
     * the row (a newer timestamp) still wins, and at an equal timestamp the expiring cell wins.
     */
    expireLegacyDeparture: `INSERT INTO ${ks}.departures (user_id, conv, kind, from_seq, left_seq) VALUES (?, ?, ?, ?, ?)
      USING TTL ? AND TIMESTAMP ?`,
    deleteLegacyDeparture: `DELETE FROM ${ks}.departures USING TIMESTAMP ? WHERE user_id = ? AND conv = ?`,

    // message log
    /** Raise a bucket's static epoch; `IF epoch < ?` is false on null, hence the second form. */
    raiseBucketEpoch: `UPDATE ${ks}.messages SET epoch = ? WHERE conv = ? AND bucket = ? IF epoch < ?`,
    claimBucketEpoch: `UPDATE ${ks}.messages SET epoch = ? WHERE conv = ? AND bucket = ? IF epoch = null`,
    /** First statement of every fenced append batch. */
    fenceBucket: `UPDATE ${ks}.messages SET epoch = ? WHERE conv = ? AND bucket = ? IF epoch = ?`,
    insertMessage: `INSERT INTO ${ks}.messages
      (conv, bucket, seq, message_id, sender_user, sender_device, client_msg_id, body, sent_at, media)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
    /** Newest row of a bucket plus its static epoch (a static-only partition gives seq = null). */
    bucketTop: `SELECT seq, epoch FROM ${ks}.messages WHERE conv = ? AND bucket = ? ORDER BY seq DESC LIMIT 1`,
    bucketNewestSentAt: `SELECT max(sent_at) AS newest FROM ${ks}.messages WHERE conv = ? AND bucket = ?`,
    existingSeqs: `SELECT seq FROM ${ks}.messages WHERE conv = ? AND bucket = ? AND seq IN ?`,
    messagesAt: `SELECT seq, message_id, sender_device, client_msg_id FROM ${ks}.messages
      WHERE conv = ? AND bucket = ? AND seq IN ?`,
    rangeAsc: `SELECT seq, message_id, sender_user, sender_device, client_msg_id, body, sent_at, media
      FROM ${ks}.messages WHERE conv = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
    rangeDesc: `SELECT seq, message_id, sender_user, sender_device, client_msg_id, body, sent_at, media
      FROM ${ks}.messages WHERE conv = ? AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq DESC`,
    /** Range tombstone over a retired bucket's rows; keeps the static (retired) epoch. */
    deleteBucketRows: `DELETE FROM ${ks}.messages WHERE conv = ? AND bucket = ? AND seq >= ? AND seq <= ?`,

    // idempotency (reservations written before the fenced batch, verified against the row)
    selectIdempotency: `SELECT sender_device, client_msg_id, seq, message_id FROM ${ks}.idempotency
      WHERE conv = ? AND (sender_device, client_msg_id) IN ?`,
    insertIdempotency: `INSERT INTO ${ks}.idempotency (conv, sender_device, client_msg_id, seq, message_id)
      VALUES (?, ?, ?, ?, ?) USING TTL ?`,

    // monotonic values (custom timestamps, see the header)
    selectHead: `SELECT head FROM ${ks}.conv_heads WHERE conv = ?`,
    writeHead: `UPDATE ${ks}.conv_heads USING TIMESTAMP ? SET head = ? WHERE conv = ?`,
    selectRetention: `SELECT retained_from FROM ${ks}.retention WHERE conv = ?`,
    writeRetention: `UPDATE ${ks}.retention USING TIMESTAMP ? SET retained_from = ? WHERE conv = ?`,
    writeDelivered: `UPDATE ${ks}.delivered_cursors USING TIMESTAMP ? SET seq = ?
      WHERE user_id = ? AND device_id = ? AND conv = ?`,
    selectDelivered: `SELECT conv, seq FROM ${ks}.delivered_cursors WHERE user_id = ? AND device_id = ?`,
    writeRead: `UPDATE ${ks}.read_cursors USING TIMESTAMP ? SET seq = ? WHERE user_id = ? AND conv = ?`,
    selectRead: `SELECT conv, seq FROM ${ks}.read_cursors WHERE user_id = ?`,

    // devices
    upsertDevice: `INSERT INTO ${ks}.devices (user_id, device_id, platform, created_at) VALUES (?, ?, ?, ?)`,
    setPushToken: `UPDATE ${ks}.devices SET push_provider = ?, push_token = ? WHERE user_id = ? AND device_id = ? IF EXISTS`,
    listDevices: `SELECT user_id, device_id, platform, push_provider, push_token, created_at
      FROM ${ks}.devices WHERE user_id = ?`,
    deleteDevice: `DELETE FROM ${ks}.devices WHERE user_id = ? AND device_id = ?`,
  } as const;
}

export type Statements = ReturnType<typeof statements>;
