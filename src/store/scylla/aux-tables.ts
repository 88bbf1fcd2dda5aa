import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import cassandra from 'cassandra-driver';
import type { ArrayOrObject, QueryOptions, types as driverTypes } from 'cassandra-driver';
import type { StoreConfig } from '../../config/schema.js';
import { StoreError } from '../errors.js';
import type { ScyllaStoreOptions } from '../options.js';
import { bootstrapCql } from './cql.js';
import { wrapDriverError } from './errors.js';
import { validateKeyspace } from './migrations.js';
import { CONSISTENCY, SERIAL } from './session.js';

/**
 * Tables that subsystems beside the message store keep in the store's keyspace (the prekey
 * directory in src/keys, media metadata and references in src/media), each through its own client.
 *
 * Their schema is not part of the store's versioned migrations (those are numbered by the store and
 * would collide with entries added elsewhere): each subsystem lists `CREATE TABLE IF NOT EXISTS`
 * statements, and `openAuxClient` creates the missing ones under the same TTL'd LWT lock row the
 * store's migrations use (`schema_lock`, name `migrations`), waiting for schema agreement after each.
 * So two nodes starting together never race the same CREATE TABLE (concurrent creation of one table
 * on two coordinators can leave two table ids in Cassandra). Tables are only ever added; changing
 * one means a new table name.
 *
 * Creation is lazy: `openAuxClient` only connects, and the first `ready()` (which every operation
 * awaits) creates what is missing. A node whose clients never use media or prekeys adds no tables
 * and no DDL round (schema agreement waits) to its start; a failed creation is retried by the next
 * operation.
 *
 * Every driver error is wrapped into a StoreError (src/store/scylla/errors.ts).
 */
export interface AuxTable {
  name: string;
  cql: (keyspace: string) => string;
}

const LOCK_NAME = 'migrations';
const LOCK_TTL_SECONDS = 60;
const LOCK_WAIT_MS = 90_000;
const AGREEMENT_WAIT_MS = 30_000;

export type AuxRow = driverTypes.Row;

export class AuxClient {
  private closed = false;
  private tablesReady: Promise<void> | null = null;
  private readonly readOpts: QueryOptions;
  private readonly writeOpts: QueryOptions;

  constructor(
    readonly client: cassandra.Client,
    readonly keyspace: string,
    private readonly opts: ScyllaStoreOptions,
    private readonly tables: readonly AuxTable[],
  ) {
    const base = { prepare: true, readTimeout: opts.requestTimeoutMs };
    this.readOpts = { ...base, consistency: CONSISTENCY[opts.readConsistency] };
    this.writeOpts = { ...base, consistency: CONSISTENCY[opts.writeConsistency], serialConsistency: SERIAL[opts.serialConsistency] };
  }

  /** Resolves once every table exists (created on the first call; retried after a failure). */
  ready(): Promise<void> {
    this.tablesReady ??= ensureTables(this, this.opts, this.tables).catch((err: unknown) => {
      this.tablesReady = null;
      const e = wrapDriverError(err);
      if (e.code !== 'store.internal') throw e;
      throw new StoreError('store.schema', `creating tables ${this.tables.map((t) => t.name).join(', ')} failed: ${e.message}`, err);
    });
    return this.tablesReady;
  }

  async read(query: string, params: unknown[], fetchSize = 1000): Promise<AuxRow[]> {
    const rs = await this.run(() => this.client.execute(query, params as ArrayOrObject, { ...this.readOpts, fetchSize }));
    return rs.rows;
  }

  async write(query: string, params: unknown[]): Promise<void> {
    await this.run(() => this.client.execute(query, params as ArrayOrObject, this.writeOpts));
  }

  /** A conditional statement: true when applied (read with `wasApplied()`, never by columns). */
  async lwt(query: string, params: unknown[]): Promise<driverTypes.ResultSet> {
    return this.run(() => this.client.execute(query, params as ArrayOrObject, this.writeOpts));
  }

  /** A batch; a conditional batch must stay within one partition. */
  async batch(stmts: { query: string; params: unknown[] }[], logged = false): Promise<driverTypes.ResultSet> {
    const queries = stmts.map((s) => ({ query: s.query, params: s.params as ArrayOrObject }));
    return this.run(() => this.client.batch(queries, { ...this.writeOpts, logged }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.shutdown();
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('store.unavailable', 'scylla client is closed');
    try {
      return await fn();
    } catch (err) {
      if (this.closed) throw new StoreError('store.unavailable', 'scylla client was closed during the request', err);
      throw wrapDriverError(err);
    }
  }
}

/** The scylla part of the validated store config, as the engine's options. */
export function scyllaOptionsOf(cfg: StoreConfig): ScyllaStoreOptions {
  const s = cfg.scylla;
  return {
    bucketSize: cfg.bucketSize,
    idempotencyTtlMs: cfg.idempotencyTtlMs,
    contactPoints: [...s.contactPoints],
    localDataCenter: s.localDataCenter,
    keyspace: s.keyspace,
    replication: { ...s.replication },
    readConsistency: s.readConsistency,
    writeConsistency: s.writeConsistency,
    serialConsistency: s.serialConsistency,
    requestTimeoutMs: s.requestTimeoutMs,
    connectTimeoutMs: s.connectTimeoutMs,
    ...(s.username === undefined ? {} : { username: s.username }),
    ...(s.password === undefined ? {} : { password: s.password }),
  };
}

/** Connects and returns the client; its tables are created by the first `ready()`. */
export async function openAuxClient(opts: ScyllaStoreOptions, tables: readonly AuxTable[]): Promise<AuxClient> {
  validateKeyspace(opts.keyspace, opts.replication);
  const client = new cassandra.Client({
    contactPoints: opts.contactPoints,
    localDataCenter: opts.localDataCenter,
    ...(opts.username !== undefined ? { credentials: { username: opts.username, password: opts.password ?? '' } } : {}),
    socketOptions: { connectTimeout: opts.connectTimeoutMs, readTimeout: opts.requestTimeoutMs },
    protocolOptions: { maxSchemaAgreementWaitSeconds: 30 },
  });
  const aux = new AuxClient(client, opts.keyspace, opts, tables);
  try {
    await client.connect();
  } catch (err) {
    await aux.close().catch(() => undefined);
    throw wrapDriverError(err);
  }
  return aux;
}

async function ensureTables(aux: AuxClient, opts: ScyllaStoreOptions, tables: readonly AuxTable[]): Promise<void> {
  const ks = opts.keyspace;
  const ddl: QueryOptions = { readTimeout: Math.max(opts.requestTimeoutMs, 20_000) };
  const runDdl = async (cql: string): Promise<void> => {
    await aux.client.execute(cql, [], ddl);
    await awaitAgreement(aux.client);
  };
  const missing = async (): Promise<AuxTable[]> => {
    const rows = await aux.read('SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?', [ks]);
    const have = new Set(rows.map((r) => String(r.get('table_name'))));
    return tables.filter((t) => !have.has(t.name));
  };
  // Same idempotent bootstrap as the store's migrations (either may run first).
  await runDdl(bootstrapCql.createKeyspace(ks, opts.replication));
  await runDdl(bootstrapCql.createLockTable(ks));
  if ((await missing()).length === 0) return;

  const owner = randomUUID();
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (!(await aux.lwt(bootstrapCql.acquireLock(ks), [LOCK_NAME, owner, new Date(), LOCK_TTL_SECONDS])).wasApplied()) {
    if (Date.now() > deadline) throw new StoreError('store.schema', `schema lock in ${ks}.schema_lock is still held after ${LOCK_WAIT_MS} ms`);
    await sleep(250);
  }
  try {
    for (const t of await missing()) await runDdl(t.cql(ks));
  } finally {
    await aux.lwt(bootstrapCql.releaseLock(ks), [LOCK_NAME, owner]).catch(() => undefined); // the TTL frees it anyway
  }
}

/** `checkSchemaAgreement` exists in cassandra-driver 4.10 but is missing from its typings. */
async function awaitAgreement(client: cassandra.Client): Promise<void> {
  const metadata = client.metadata as unknown as { checkSchemaAgreement(): Promise<boolean> };
  const deadline = Date.now() + AGREEMENT_WAIT_MS;
  while (!(await metadata.checkSchemaAgreement())) {
    if (Date.now() > deadline) throw new StoreError('store.schema', `no schema agreement after ${AGREEMENT_WAIT_MS} ms`);
    await sleep(200);
  }
}
