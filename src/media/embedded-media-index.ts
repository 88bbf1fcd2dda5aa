import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { StoreError } from '../store/errors.js';
import { wrapLmdbError } from '../store/embedded/lmdb-errors.js';
import type { MediaIndex, MediaMeta } from './media-index.js';

/**
 * The media index on lmdb (embedded mode), in its own environment (`<media.diskPath>/index`):
 *   meta  id            -> MediaMeta
 *   refs  [conv, id]    -> 1
 * Commits are synced before their promise resolves.
 */
export class EmbeddedMediaIndex implements MediaIndex {
  readonly engine = 'embedded' as const;
  private root: RootDatabase | null = null;
  private meta!: Database<MediaMeta, string>;
  private refs!: Database<1, Key>;

  constructor(private readonly path: string) {}

  async open(): Promise<void> {
    if (this.root) return;
    try {
      const root = open({ path: this.path, overlappingSync: false, noSync: false, maxDbs: 4, useRecords: false } as Parameters<typeof open>[0] & {
        useRecords: boolean;
      });
      this.meta = root.openDB<MediaMeta, string>({ name: 'meta' });
      this.refs = root.openDB<1, Key>({ name: 'refs' });
      this.root = root;
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }

  async close(): Promise<void> {
    const root = this.root;
    this.root = null;
    if (root) await root.close();
  }

  putMeta(meta: MediaMeta): Promise<void> {
    return this.run(async () => {
      await this.meta.ifNoExists(meta.id, () => {
        this.meta.put(meta.id, { ...meta });
      });
    });
  }

  getMeta(id: string): Promise<MediaMeta | null> {
    return this.run(async () => this.meta.get(id) ?? null);
  }

  recordSent(conversationId: string, mediaIds: readonly string[]): Promise<void> {
    return this.run(async () => {
      if (mediaIds.length === 0) return;
      await this.root!.transaction(() => {
        for (const id of mediaIds) this.refs.put([conversationId, id], 1);
      });
    });
  }

  isSentIn(conversationId: string, mediaId: string): Promise<boolean> {
    return this.run(async () => this.refs.get([conversationId, mediaId]) !== undefined);
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.root) throw new StoreError('store.unavailable', 'media index is not open');
    try {
      return await fn();
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }
}
