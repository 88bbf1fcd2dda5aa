import { StoreError } from '../store/errors.js';
import type { ScyllaStoreOptions } from '../store/options.js';
import { openAuxClient, type AuxClient, type AuxTable } from '../store/scylla/aux-tables.js';
import { numOr } from '../store/scylla/values.js';
import type { MediaIndex, MediaMeta } from './media-index.js';

/**
 * The media index on ScyllaDB (tested on Cassandra 5), in the store's keyspace:
 *   media_meta  id PRIMARY KEY                      (written IF NOT EXISTS: the first record wins)
 *   media_refs  PRIMARY KEY ((conv), media_id)      (one partition per conversation)
 */
export const MEDIA_TABLES: readonly AuxTable[] = [
  {
    name: 'media_meta',
    cql: (ks) => `CREATE TABLE IF NOT EXISTS ${ks}.media_meta (
      id text PRIMARY KEY, type text, size bigint, uploader text, created_at bigint)`,
  },
  {
    name: 'media_refs',
    cql: (ks) => `CREATE TABLE IF NOT EXISTS ${ks}.media_refs (conv text, media_id text, PRIMARY KEY ((conv), media_id))`,
  },
];

export class ScyllaMediaIndex implements MediaIndex {
  readonly engine = 'scylla' as const;
  private aux: AuxClient | null = null;
  private q!: ReturnType<typeof statements>;

  constructor(private readonly opts: ScyllaStoreOptions) {}

  async open(): Promise<void> {
    if (this.aux) return;
    this.aux = await openAuxClient(this.opts, MEDIA_TABLES);
    this.q = statements(this.opts.keyspace);
  }

  async close(): Promise<void> {
    const aux = this.aux;
    this.aux = null;
    await aux?.close();
  }

  async putMeta(m: MediaMeta): Promise<void> {
    await (await this.client()).lwt(this.q.insertMeta, [m.id, m.type, m.size, m.uploader, m.createdAtMs]);
  }

  async getMeta(id: string): Promise<MediaMeta | null> {
    const row = (await (await this.client()).read(this.q.selectMeta, [id]))[0];
    if (!row) return null;
    return {
      id,
      type: String(row.get('type')),
      size: numOr(row.get('size'), 0),
      uploader: String(row.get('uploader')),
      createdAtMs: numOr(row.get('created_at'), 0),
    };
  }

  async recordSent(conversationId: string, mediaIds: readonly string[]): Promise<void> {
    if (mediaIds.length === 0) return;
    // One partition: an unlogged batch is one mutation, applied atomically.
    await (await this.client()).batch(mediaIds.map((id) => ({ query: this.q.insertRef, params: [conversationId, id] })));
  }

  async isSentIn(conversationId: string, mediaId: string): Promise<boolean> {
    return (await (await this.client()).read(this.q.selectRef, [conversationId, mediaId])).length > 0;
  }

  /** The open client, once its tables exist (created on first use: src/store/scylla/aux-tables.ts). */
  private async client(): Promise<AuxClient> {
    if (!this.aux) throw new StoreError('store.unavailable', 'media index is not open');
    await this.aux.ready();
    return this.aux;
  }
}

function statements(ks: string) {
  return {
    insertMeta: `INSERT INTO ${ks}.media_meta (id, type, size, uploader, created_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS`,
    selectMeta: `SELECT type, size, uploader, created_at FROM ${ks}.media_meta WHERE id = ?`,
    insertRef: `INSERT INTO ${ks}.media_refs (conv, media_id) VALUES (?, ?)`,
    selectRef: `SELECT media_id FROM ${ks}.media_refs WHERE conv = ? AND media_id = ?`,
  };
}
