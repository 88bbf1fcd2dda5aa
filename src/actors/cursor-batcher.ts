/**
 * Batches delivered-cursor writes of one shard: dacks of every user actor on the shard are merged
 * (highest seq per device and conversation) and written with one `advanceDelivered` every
 * `cursorFlushMs`. The store's cursors are monotonic, so merging and re-sending are always safe.
 *
 * A failed write is merged back and retried on the next tick: a cursor that lags only makes a
 * device sync a little more than needed, never less. Bounded: past `maxKeys` distinct cursors a
 * flush starts at once; while a flush is in flight new updates keep merging in memory.
 */
import type { Store } from '../store/store.js';
import type { CursorUpdate } from '../store/types.js';
import type { Clock, TimerHandle } from './clock.js';
import type { ActorLog } from './log.js';
import { deliveryMetrics } from './metrics.js';

export interface CursorBatcherOptions {
  store: Store;
  clock: Clock;
  log: ActorLog;
  flushMs: number;
  maxKeys?: number;
}

export class CursorBatcher {
  private batch = new Map<string, CursorUpdate>();
  /** Callers of stored() waiting for the batch being collected to be written. */
  private waiters: (() => void)[] = [];
  private timer: TimerHandle | null = null;
  private flushing: Promise<void> | null = null;
  private readonly maxKeys: number;

  constructor(private readonly opts: CursorBatcherOptions) {
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  get size(): number {
    return this.batch.size;
  }

  add(u: CursorUpdate): void {
    if (u.seq <= 0) return;
    const key = `${u.userId}\u0000${u.deviceId}\u0000${u.conversationId}`;
    const known = this.batch.get(key);
    if (known === undefined || known.seq < u.seq) this.batch.set(key, u);
    if (this.batch.size >= this.maxKeys) void this.flush();
    else this.schedule();
  }

  /**
   * Resolves once everything added so far is stored (a failed write is retried, and so is the
   * wait). Group receipts count a dack toward "delivered to all" only then, so a later activation,
   * which fills its state from the stored cursors, never finds a lower level than one announced.
   */
  stored(): Promise<void> {
    if (this.batch.size > 0) return new Promise((resolve) => this.waiters.push(resolve));
    if (this.flushing !== null) return this.flushing.then(() => this.stored());
    return Promise.resolve();
  }

  /** Writes everything batched so far (and waits for a flush already in flight). */
  async flush(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    if (this.timer !== null) this.opts.clock.clearTimer(this.timer);
    this.timer = null;
    if (this.batch.size === 0) return;
    const updates = [...this.batch.values()];
    const waiters = this.waiters;
    this.batch = new Map();
    this.waiters = [];
    this.flushing = this.write(updates, waiters);
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  private async write(updates: CursorUpdate[], waiters: (() => void)[]): Promise<void> {
    try {
      await this.opts.store.advanceDelivered(updates);
      deliveryMetrics.cursorFlushes.inc({ result: 'ok' });
      for (const w of waiters) w();
    } catch (err) {
      deliveryMetrics.cursorFlushes.inc({ result: 'error' });
      this.opts.log.warn({ err, updates: updates.length }, 'delivered-cursor flush failed; retrying');
      this.waiters.push(...waiters);
      for (const u of updates) this.add(u);
    }
  }

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = this.opts.clock.setTimer(this.opts.flushMs, () => {
      this.timer = null;
      void this.flush();
    });
  }
}
