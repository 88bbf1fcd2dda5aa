import cassandra from 'cassandra-driver';
import type { ArrayOrObject, QueryOptions, types as driverTypes } from 'cassandra-driver';
import { StoreError } from '../errors.js';
import type { Consistency, ScyllaStoreOptions, SerialConsistency } from '../options.js';
import type { Statements } from './cql.js';

const { types } = cassandra;

export type Row = driverTypes.Row;
export type ResultSet = driverTypes.ResultSet;
export interface Stmt {
  query: string;
  params: unknown[];
}

/** Driver consistency codes of the configured levels (shared with aux-tables.ts). */
export const CONSISTENCY: Record<Consistency, number> = {
  one: types.consistencies.one,
  two: types.consistencies.two,
  three: types.consistencies.three,
  quorum: types.consistencies.quorum,
  all: types.consistencies.all,
  localQuorum: types.consistencies.localQuorum,
  eachQuorum: types.consistencies.eachQuorum,
  localOne: types.consistencies.localOne,
};
export const SERIAL: Record<SerialConsistency, number> = {
  serial: types.consistencies.serial,
  localSerial: types.consistencies.localSerial,
};

/** Rows fetched per page when a query reads a whole partition. */
const PAGE_SIZE = 1000;

/**
 * One open connection pool plus the engine's settings: every query of the engine goes through here,
 * prepared, with the configured consistency levels and timeout.
 *
 * - `read`: readConsistency. `serialRead`: the serial consistency, which also finishes any LWT still in
 *   flight on the partition; used where the engine must see the linearized state (writer open, append
 *   diagnosis, replay verification).
 * - `write` and `batch`: writeConsistency. `lwt` and `lwtBatch`: writeConsistency for the commit and
 *   serialConsistency for the Paxos rounds.
 */
export class Session {
  closed = false;
  readonly ttlSeconds: number;
  private readonly readOpts: QueryOptions;
  private readonly serialReadOpts: QueryOptions;
  private readonly writeOpts: QueryOptions;

  constructor(
    readonly client: cassandra.Client,
    readonly cql: Statements,
    readonly opts: ScyllaStoreOptions,
  ) {
    const base = { prepare: true, readTimeout: opts.requestTimeoutMs, fetchSize: PAGE_SIZE };
    const serialConsistency = SERIAL[opts.serialConsistency];
    this.readOpts = { ...base, consistency: CONSISTENCY[opts.readConsistency] };
    this.serialReadOpts = { ...base, consistency: serialConsistency };
    this.writeOpts = { ...base, consistency: CONSISTENCY[opts.writeConsistency], serialConsistency };
    this.ttlSeconds = Math.max(1, Math.ceil(opts.idempotencyTtlMs / 1000));
  }

  get bucketSize(): number {
    return this.opts.bucketSize;
  }

  assertOpen(): void {
    if (this.closed) throw new StoreError('store.unavailable', 'scylla store is closed');
  }

  /** All rows, following pages (partitions here are bounded: a bucket, a user's list). */
  async read(query: string, params: unknown[], serial = false): Promise<Row[]> {
    const options = serial ? this.serialReadOpts : this.readOpts;
    const rows: Row[] = [];
    let pageState: string | undefined;
    do {
      const rs = await this.run(() =>
        this.client.execute(query, params as ArrayOrObject, pageState ? { ...options, pageState } : options),
      );
      rows.push(...rs.rows);
      pageState = rs.pageState ?? undefined;
    } while (pageState);
    return rows;
  }

  async readOne(query: string, params: unknown[], serial = false): Promise<Row | null> {
    const options = serial ? this.serialReadOpts : this.readOpts;
    const rs = await this.run(() => this.client.execute(query, params as ArrayOrObject, options));
    return rs.first() ?? null;
  }

  async write(query: string, params: unknown[]): Promise<void> {
    await this.run(() => this.client.execute(query, params as ArrayOrObject, this.writeOpts));
  }

  /** A conditional statement; read the outcome with `wasApplied()` (never by column count). */
  lwt(query: string, params: unknown[]): Promise<ResultSet> {
    return this.run(() => this.client.execute(query, params as ArrayOrObject, this.writeOpts));
  }

  /**
   * A batch. `logged` only for small multi-partition batches that must apply all-or-nothing; a
   * conditional batch (single partition) goes through Paxos and needs no batch log.
   */
  batch(stmts: Stmt[], logged = false): Promise<ResultSet> {
    const queries = stmts.map((s) => ({ query: s.query, params: s.params as ArrayOrObject }));
    return this.run(() => this.client.batch(queries, { ...this.writeOpts, logged }));
  }

  /** Fails fast once closed, and turns errors of a request cut by close() into store.unavailable. */
  private async run<T>(fn: () => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await fn();
    } catch (err) {
      if (this.closed) throw new StoreError('store.unavailable', 'scylla store was closed during the request', err);
      throw err;
    }
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
