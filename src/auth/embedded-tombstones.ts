import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { StoreError } from '../store/errors.js';
import { wrapLmdbError } from '../store/embedded/lmdb-errors.js';
import { tombstoneMetrics, type DeviceTombstones } from './tombstones.js';

/** Longest pause between sweeps (shorter when tombstones are kept for less). */
const SWEEP_MAX_INTERVAL_MS = 3_600_000;

/**
 * Device tombstones on lmdb (embedded mode), in their own environment (`<dataDir>/tombstones`),
 * opened by every shard thread of the node: lmdb shares one environment across threads, and a write
 * committed (synced) by one thread is seen by the next read of any other. One table:
 *   removed  [user, device] -> removedAtMs
 *
 * Pruning: a tombstone older than `keepMs` (tombstoneKeepMs) is dropped: `get` ignores and removes
 * it, and a sweep removes every such row at open and then periodically (each shard thread sweeps the
 * shared environment; removals are conditional transactions, so a row is counted once).
 */
export class EmbeddedTombstones implements DeviceTombstones {
  readonly engine = 'embedded' as const;
  private root: RootDatabase | null = null;
  private removed!: Database<number, Key>;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<number> | null = null;

  constructor(
    private readonly path: string,
    readonly keepMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async open(): Promise<void> {
    if (this.root) return;
    try {
      const root = open({ path: this.path, overlappingSync: false, noSync: false, maxDbs: 2 });
      this.removed = root.openDB<number, Key>({ name: 'removed' });
      this.root = root;
    } catch (err) {
      throw wrapLmdbError(err);
    }
    const everyMs = Math.min(SWEEP_MAX_INTERVAL_MS, Math.max(1000, this.keepMs));
    this.timer = setInterval(() => void this.sweep().catch(() => undefined), everyMs);
    this.timer.unref();
    void this.sweep().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping?.catch(() => undefined);
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
      const removedAtMs = this.removed.get([user, device]);
      if (removedAtMs === undefined) return null;
      if (!this.stale(removedAtMs, this.now())) return removedAtMs;
      await this.removeIfStale([[user, device]]);
      return null;
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }

  /** Removes every tombstone older than keepMs; resolves with how many went. One sweep at a time. */
  sweep(): Promise<number> {
    this.sweeping ??= (async () => {
      if (!this.root) return 0;
      const now = this.now();
      const due: Key[] = [];
      for (const { key, value } of this.removed.getRange({})) if (this.stale(value, now)) due.push(key);
      return due.length === 0 ? 0 : this.removeIfStale(due);
    })()
      .catch((err: unknown) => {
        throw wrapLmdbError(err);
      })
      .finally(() => {
        this.sweeping = null;
      });
    return this.sweeping;
  }

  private stale(removedAtMs: number, now: number): boolean {
    return removedAtMs + this.keepMs <= now;
  }

  /** Removes the rows still stale inside the write transaction (a newer removal since is kept). */
  private async removeIfStale(keys: Key[]): Promise<number> {
    const n = await this.removed.transaction(() => {
      const now = this.now();
      let removed = 0;
      for (const key of keys) {
        const at = this.removed.get(key);
        if (at !== undefined && this.stale(at, now)) {
          this.removed.remove(key);
          removed++;
        }
      }
      return removed;
    });
    if (n > 0) tombstoneMetrics.pruned.inc(n);
    return n;
  }

  private live(): void {
    if (!this.root) throw new StoreError('store.unavailable', 'device tombstones are not open');
  }
}
