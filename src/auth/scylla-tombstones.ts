import type { ScyllaStoreOptions } from '../store/options.js';
import { numOr } from '../store/scylla/values.js';
import { StoreError } from '../store/errors.js';
import { openAuxClient, type AuxClient, type AuxTable } from '../store/scylla/aux-tables.js';
import type { DeviceTombstones } from './tombstones.js';

/**
 * Device tombstones on ScyllaDB (tested on Cassandra 5), a table in the store's keyspace shared by
 * every node, read and written at the store's consistency levels. The table is created at `open`,
 * not lazily like the other aux tables: every connection reads it.
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

  constructor(private readonly opts: ScyllaStoreOptions) {}

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
    this.insert = `INSERT INTO ${ks}.device_tombstones (user_id, device_id, removed_at) VALUES (?, ?, ?)`;
    this.select = `SELECT removed_at FROM ${ks}.device_tombstones WHERE user_id = ? AND device_id = ?`;
    this.aux = aux;
  }

  async close(): Promise<void> {
    const aux = this.aux;
    this.aux = null;
    await aux?.close();
  }

  async put(user: string, device: string, removedAtMs: number): Promise<void> {
    await this.client().write(this.insert, [user, device, removedAtMs]);
  }

  async get(user: string, device: string): Promise<number | null> {
    const row = (await this.client().read(this.select, [user, device], 1))[0];
    return row === undefined ? null : numOr(row.get('removed_at'), 0);
  }

  private client(): AuxClient {
    if (!this.aux) throw new StoreError('store.unavailable', 'device tombstones are not open');
    return this.aux;
  }
}
