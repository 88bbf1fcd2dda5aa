import type { ScyllaStoreOptions } from '../store/options.js';
import { num, numOr } from '../store/scylla/values.js';
import { StoreError } from '../store/errors.js';
import { openAuxClient, type AuxClient, type AuxTable } from '../store/scylla/aux-tables.js';
import type { DeviceTombstones } from './tombstones.js';

/**
 * Device tombstones on ScyllaDB (tested on Cassandra 5), a table in the store's keyspace shared by
 * every node, read and written at the store's consistency levels. The table is created at `open`,
 * not lazily like the other aux tables: every connection reads it.
 *
 * Rows are written `USING TTL` = what is left of `keepMs` after the removal time, so they vanish on
 * every replica once no token issued before the removal can verify. A row written before tombstones
 * had a TTL gets one at its first read, counted from its removal time and at its own write timestamp
 * (a newer removal of the device, a newer timestamp, always wins).
 */
export const TOMBSTONE_TABLES: readonly AuxTable[] = [
  {
    name: 'device_tombstones',
    cql: (ks) => `CREATE TABLE IF NOT EXISTS ${ks}.device_tombstones (
      user_id text, device_id text, removed_at bigint,
      PRIMARY KEY (user_id, device_id))`,
  },
];

export class ScyllaTombstones implements DeviceTombstones {
  readonly engine = 'scylla' as const;
  private aux: AuxClient | null = null;
  private insert = '';
  private select = '';
  private insertLegacy = '';
  private deleteLegacy = '';

  constructor(
    private readonly opts: ScyllaStoreOptions,
    readonly keepMs: number,
  ) {}

  async open(): Promise<void> {
    if (this.aux) return;
    const aux = await openAuxClient(this.opts, TOMBSTONE_TABLES);
    try {
      await aux.ready();
    } catch (err) {
      await aux.close().catch(() => undefined);
      throw err;
    }
    const ks = this.opts.keyspace;
    this.insert = `INSERT INTO ${ks}.device_tombstones (user_id, device_id, removed_at) VALUES (?, ?, ?) USING TTL ?`;
    this.select = `SELECT removed_at, TTL(removed_at) AS removed_ttl, WRITETIME(removed_at) AS written_at
      FROM ${ks}.device_tombstones WHERE user_id = ? AND device_id = ?`;
    this.insertLegacy = `INSERT INTO ${ks}.device_tombstones (user_id, device_id, removed_at) VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?`;
    this.deleteLegacy = `DELETE FROM ${ks}.device_tombstones USING TIMESTAMP ? WHERE user_id = ? AND device_id = ?`;
    this.aux = aux;
  }

  async close(): Promise<void> {
    const aux = this.aux;
    this.aux = null;
    await aux?.close();
  }

  async put(user: string, device: string, removedAtMs: number): Promise<void> {
    // TTL 0 would mean "never expires": a removal already past keepMs still gets one second.
    await this.client().write(this.insert, [user, device, removedAtMs, Math.max(1, this.ttlS(removedAtMs))]);
  }

  async get(user: string, device: string): Promise<number | null> {
    const row = (await this.client().read(this.select, [user, device], 1))[0];
    if (row === undefined) return null;
    const removedAtMs = numOr(row.get('removed_at'), 0);
    const writtenAtUs = num(row.get('written_at'));
    if (num(row.get('removed_ttl')) !== null || writtenAtUs === null) return removedAtMs;
    // Written before tombstones had a TTL. Housekeeping: a failed rewrite does not fail the check
    // (the next read tries again).
    const ttlS = this.ttlS(removedAtMs);
    if (ttlS < 1) {
      await this.client().write(this.deleteLegacy, [writtenAtUs, user, device]).catch(() => undefined);
      return null;
    }
    await this.client().write(this.insertLegacy, [user, device, removedAtMs, ttlS, writtenAtUs]).catch(() => undefined);
    return removedAtMs;
  }

  /** Seconds left of keepMs after a removal at `removedAtMs` (0 or less: not needed any more). */
  private ttlS(removedAtMs: number): number {
    return Math.ceil((removedAtMs + this.keepMs - Date.now()) / 1000);
  }

  private client(): AuxClient {
    if (!this.aux) throw new StoreError('store.unavailable', 'device tombstones are not open');
    return this.aux;
  }
}
