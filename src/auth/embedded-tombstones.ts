import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { StoreError } from '../store/errors.js';
import { wrapLmdbError } from '../store/embedded/lmdb-errors.js';
import type { DeviceTombstones } from './tombstones.js';

/**
 * Device tombstones on lmdb (embedded mode), in their own environment (`<dataDir>/tombstones`),
 * opened by every shard thread of the node: lmdb shares one environment across threads, and a write
 * committed (synced) by one thread is seen by the next read of any other. One table:
 *   removed  [user, device] -> removedAtMs
 */
export class EmbeddedTombstones implements DeviceTombstones {
  readonly engine = 'embedded' as const;
  private root: RootDatabase | null = null;
  private removed!: Database<number, Key>;

  constructor(private readonly path: string) {}

  async open(): Promise<void> {
    if (this.root) return;
    try {
      const root = open({ path: this.path, overlappingSync: false, noSync: false, maxDbs: 2 });
      this.removed = root.openDB<number, Key>({ name: 'removed' });
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

  async put(user: string, device: string, removedAtMs: number): Promise<void> {
    this.live();
    try {
      await this.removed.put([user, device], removedAtMs);
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }

  async get(user: string, device: string): Promise<number | null> {
    this.live();
    try {
      return this.removed.get([user, device]) ?? null;
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }

  private live(): void {
    if (!this.root) throw new StoreError('store.unavailable', 'device tombstones are not open');
  }
}
