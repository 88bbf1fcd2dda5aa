import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, QueryOptions } from 'cassandra-driver';
import { StoreError } from '../errors.js';
import { wrapDriverError } from './errors.js';
import { bootstrapCql, KEYSPACE_PATTERN, MIGRATIONS, type Migration, type MigrationStep } from './cql.js';
import type { Session } from './session.js';
import { num } from './values.js';

/** Replication map keys and values are interpolated into CREATE KEYSPACE: keep them plain. */
const REPLICATION_TOKEN = /^[A-Za-z0-9_.\-]{1,128}$/;
const LOCK_NAME = 'migrations';
const LOCK_TTL_SECONDS = 60;
const LOCK_WAIT_MS = 90_000;
const LOCK_POLL_MS = 250;
const AGREEMENT_WAIT_MS = 30_000;

export function validateKeyspace(keyspace: string, replication: Record<string, string>): void {
  if (!KEYSPACE_PATTERN.test(keyspace)) {
    throw new StoreError('store.invalid', `store.keyspace must match ${KEYSPACE_PATTERN}, got ${JSON.stringify(keyspace)}`);
  }
  const entries = Object.entries(replication ?? {});
  if (!entries.some(([k]) => k === 'class')) {
    throw new StoreError('store.invalid', 'store.replication must have a "class" entry');
  }
  for (const [k, v] of entries) {
    if (!REPLICATION_TOKEN.test(k) || typeof v !== 'string' || !REPLICATION_TOKEN.test(v)) {
      throw new StoreError('store.invalid', `store.replication entry ${JSON.stringify(k)}: ${JSON.stringify(v)} is not a plain token`);
    }
  }
}

/**
 * Creates the keyspace and brings the schema to the newest version this code knows.
 *
 * Safe when several nodes start at once: every DDL step is idempotent (`IF NOT EXISTS`, or an
 * ADD COLUMN that is skipped when system_schema already lists the column, and re-checked there when
 * the ALTER fails), and a TTL'd LWT lock row makes nodes take turns so they do not race the same DDL.
 * A node that waited for the lock re-reads the applied versions and usually has nothing left to do.
 * Each step waits for schema agreement before the next one. A schema newer than this code is
 * `store.schema`: an old binary must not write into a newer layout.
 */
export async function migrate(s: Session, migrations: readonly Migration[] = MIGRATIONS): Promise<void> {
  try {
    await migrateNow(s, migrations);
  } catch (err) {
    const e = wrapDriverError(err);
    // Unreachable or slow servers stay retryable; anything else the server refused is a schema problem.
    if (e.code !== 'store.internal') throw e;
    throw new StoreError('store.schema', `schema migration failed: ${e.message}`, err);
  }
}

async function migrateNow(s: Session, migrations: readonly Migration[]): Promise<void> {
  const ks = s.opts.keyspace;
  const ddl: QueryOptions = { readTimeout: Math.max(s.opts.requestTimeoutMs, 20_000) };
  const runDdl = async (cql: string): Promise<void> => {
    await s.client.execute(cql, [], ddl);
    await awaitAgreement(s.client);
  };
  await runDdl(bootstrapCql.createKeyspace(ks, s.opts.replication));
  await runDdl(bootstrapCql.createMigrationsTable(ks));
  await runDdl(bootstrapCql.createLockTable(ks));

  const latest = Math.max(0, ...migrations.map((m) => m.version));
  let applied = await appliedVersions(s, latest);
  if (migrations.every((m) => applied.has(m.version))) return;

  const owner = randomUUID();
  await acquireLock(s, owner);
  try {
    applied = await appliedVersions(s, latest);
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      for (const step of m.steps) await runStep(s, step, runDdl);
      await s.write(bootstrapCql.recordVersion(ks), [m.version, m.description, new Date()]);
    }
  } finally {
    await s.lwt(bootstrapCql.releaseLock(ks), [LOCK_NAME, owner]).catch(() => undefined); // the TTL frees it anyway
  }
}

async function appliedVersions(s: Session, latest: number): Promise<Set<number>> {
  const rows = await s.read(bootstrapCql.appliedVersions(s.opts.keyspace), []);
  const versions = new Set(rows.map((r) => num(r.get('version')) ?? 0));
  const newest = Math.max(0, ...versions);
  if (newest > latest) {
    throw new StoreError(
      'store.schema',
      `keyspace ${s.opts.keyspace} has schema version ${newest}, newer than this code's ${latest}; upgrade the code`,
    );
  }
  return versions;
}

async function runStep(s: Session, step: MigrationStep, runDdl: (cql: string) => Promise<void>): Promise<void> {
  const ks = s.opts.keyspace;
  if (step.kind === 'ddl') return runDdl(step.cql(ks));
  const exists = async (): Promise<boolean> =>
    (await s.read(bootstrapCql.columnExists, [ks, step.table, step.column])).length > 0;
  if (await exists()) return;
  try {
    await runDdl(bootstrapCql.addColumn(ks, step.table, step.column, step.type));
  } catch (err) {
    // Another node added it between our check and our ALTER: decided by the schema, not the message.
    await awaitAgreement(s.client);
    if (!(await exists())) throw err;
  }
}

async function acquireLock(s: Session, owner: string): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const rs = await s.lwt(bootstrapCql.acquireLock(s.opts.keyspace), [LOCK_NAME, owner, new Date(), LOCK_TTL_SECONDS]);
    if (rs.wasApplied()) return;
    if (Date.now() > deadline) {
      throw new StoreError('store.schema', `schema migration lock in ${s.opts.keyspace}.schema_lock is still held after ${LOCK_WAIT_MS} ms`);
    }
    await sleep(LOCK_POLL_MS);
  }
}

/** `checkSchemaAgreement` exists in cassandra-driver 4.10 but is missing from its typings. */
interface AgreementCheck {
  checkSchemaAgreement(): Promise<boolean>;
}

async function awaitAgreement(client: Client): Promise<void> {
  const deadline = Date.now() + AGREEMENT_WAIT_MS;
  const metadata = client.metadata as unknown as AgreementCheck;
  while (!(await metadata.checkSchemaAgreement())) {
    if (Date.now() > deadline) throw new StoreError('store.schema', `no schema agreement after ${AGREEMENT_WAIT_MS} ms`);
    await sleep(200);
  }
}
