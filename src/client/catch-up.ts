import type { ConversationKind, MessageEntry, SyncBatchFrame, SyncedFrame, SyncFrame } from '../protocol/client-frames.js';
import { MAX_PAGE_LIMIT } from '../protocol/client-frames.js';
import type { Receiver } from './receiver.js';
import type { Session } from './session.js';
import { fullJitterDelayMs, type BackoffOptions, type Clock, type TimerHandle } from './timing.js';
import { ClientError, DISCONNECTED, type MessageSource } from './types.js';

/**
 * Catch-up: sync rounds after every (re)connect until the server says the device is caught up
 * (docs/PROTOCOL.md 3.3), and gap repair with `history` (3.2).
 *
 * Gap repair waits while a sync round runs (its batches usually fill the gap) and for
 * `gapRepairDelayMs` after a gap opens (a redelivery on its way may fill it), then asks for the
 * missing range, newest first, page by page, until it is filled or the server says it expired.
 */

export interface CatchUpDeps {
  receiver: Receiver;
  clock: Clock;
  random: () => number;
  backoff: BackoffOptions;
  /** `sync.limit`: messages per conversation per round. */
  syncLimit: number;
  gapRepairDelayMs: number;
  /** The open session, or undefined while disconnected. */
  session(): Session | undefined;
  /** Hands one message to the receiver (and lets the outbox settle the device's own messages). */
  feed(conv: string, kind: ConversationKind | undefined, entry: MessageEntry, source: MessageSource): void;
  /** A round ended; `final` when the device is caught up. */
  synced(frame: SyncedFrame, rounds: number, final: boolean): void;
  error(err: ClientError, conv?: string): void;
}

export class CatchUp {
  readonly #d: CatchUpDeps;
  #session: Session | undefined;
  #syncing = false;
  #caughtUp = false;
  readonly #repairTimers = new Map<string, TimerHandle>();
  readonly #repairing = new Set<string>();

  constructor(deps: CatchUpDeps) {
    this.#d = deps;
  }

  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  onOpen(session: Session): void {
    this.#session = session;
    this.#caughtUp = false;
    void this.#sync(session);
  }

  onDown(): void {
    this.#session = undefined;
    this.#caughtUp = false;
    for (const handle of this.#repairTimers.values()) this.#d.clock.clearTimeout(handle);
    this.#repairTimers.clear();
  }

  /** Runs a sync round soon (a message arrived for a conversation whose cursor is unknown). */
  requestSync(): void {
    if (this.#syncing || this.#session === undefined) return; // the running or next round covers it
    void this.#sync(this.#session);
  }

  scheduleRepair(conv: string): void {
    if (this.#repairTimers.has(conv) || this.#repairing.has(conv)) return;
    const handle = this.#d.clock.setTimeout(() => {
      this.#repairTimers.delete(conv);
      void this.#repair(conv);
    }, this.#d.gapRepairDelayMs);
    this.#repairTimers.set(conv, handle);
  }

  async #sync(session: Session): Promise<void> {
    const r = this.#d.receiver;
    this.#syncing = true;
    let rounds = 0;
    let attempt = 0;
    try {
      for (;;) {
        if (this.#session !== session) return;
        const cursors = r.cursors();
        const frame: Omit<SyncFrame, 'id'> = { t: 'sync', limit: this.#d.syncLimit };
        if (Object.keys(cursors).length > 0) frame.cursors = cursors;
        let synced: SyncedFrame;
        try {
          synced = await session.request(frame, (batch) => this.#onBatch(batch));
        } catch (err) {
          if (!(await this.#shouldRetry(session, err as ClientError, attempt++))) return;
          continue;
        }
        rounds++;
        // A head below the cursor we sent means the server's log was reset (restored from a
        // backup): drop our state for it and sync it again from 0 (PROTOCOL 3.3).
        let reset = false;
        for (const [conv, head] of Object.entries(synced.heads)) {
          const sentCursor = cursors[conv];
          if (sentCursor !== undefined && head < sentCursor) {
            r.reset(conv);
            reset = true;
          }
        }
        const final = !synced.more && !reset;
        if (final) this.#settleUnknowns(synced.heads);
        this.#d.synced(synced, rounds, final);
        if (final) break;
      }
      this.#caughtUp = true;
    } finally {
      this.#syncing = false;
    }
    for (const conv of r.gaps()) this.scheduleRepair(conv);
    // Messages that arrived for unknown conversations after the last round's heads were read.
    if (r.unknowns().length > 0) this.requestSync();
  }

  #onBatch(batch: SyncBatchFrame): void {
    const r = this.#d.receiver;
    const log = r.log(batch.conv);
    // Below a group member's join floor is not a gap: the device starts there (PROTOCOL 3.7).
    if (batch.from !== undefined) r.setBase(batch.conv, batch.from - 1);
    if (batch.expired === true && batch.retainedFrom !== undefined) r.expire(batch.conv, batch.retainedFrom);
    // Batches start right after the device's cursor: for a conversation we knew nothing about, the
    // first entry says where the server's stored cursor is.
    else if (log.have === undefined && batch.msgs.length > 0) r.setBase(batch.conv, batch.msgs[0]!.seq - 1);
    for (const entry of batch.msgs) this.#d.feed(batch.conv, batch.kind, entry, 'sync');
  }

  /**
   * After the final round: a conversation in `heads` whose cursor is still unknown got no batch, so
   * the device's stored cursor is at its head. A buffered conversation missing from `heads` was
   * created after the heads were read: everything in it is new, so its cursor starts at 0.
   */
  #settleUnknowns(heads: Record<string, number>): void {
    const r = this.#d.receiver;
    for (const [conv, head] of Object.entries(heads)) if (r.peek(conv)?.have === undefined) r.setBase(conv, head);
    for (const conv of r.unknowns()) r.setBase(conv, 0);
  }

  async #repair(conv: string): Promise<void> {
    const session = this.#session;
    // During a sync round, or before the first one ended, the round's end reschedules every gap.
    if (session === undefined || this.#syncing || !this.#caughtUp) return;
    const r = this.#d.receiver;
    this.#repairing.add(conv);
    let attempt = 0;
    try {
      for (let m = r.missing(conv); m !== undefined; m = r.missing(conv)) {
        const limit = Math.min(m.before - m.have - 1, MAX_PAGE_LIMIT);
        let page;
        try {
          page = await session.request({ t: 'history', conv, before: m.before, limit });
        } catch (err) {
          if (!(await this.#shouldRetry(session, err as ClientError, attempt++, conv))) return;
          continue;
        }
        for (const entry of page.msgs) this.#d.feed(conv, undefined, entry, 'history');
        // The page reached the member's join floor: what lies below it is not this user's to see.
        if (page.from !== undefined) r.setBase(conv, page.from - 1);
        const still = r.missing(conv);
        // Filled, or progress: the page filled the gap's upper part (`before` moved down) or all of
        // it (`have` moved up, possibly to a later gap): go on.
        if (still === undefined || still.before < m.before || still.have > m.have) continue;
        // No message of the range came back. `expired`: the range was deleted by retention, an
        // authoritative gap. Otherwise the server contradicts itself; report and stop retrying.
        if (page.expired) r.expire(conv, still.before);
        else {
          this.#d.error(new ClientError('client.gap', `history returned nothing below ${m.before} in ${conv}`, { retryable: false }), conv);
          return;
        }
      }
    } finally {
      this.#repairing.delete(conv);
    }
  }

  /** Waits out a retryable error (true: try again) or reports a final one (false). */
  async #shouldRetry(session: Session, err: ClientError, attempt: number, conv?: string): Promise<boolean> {
    if (this.#session !== session || err.code === DISCONNECTED) return false;
    if (!err.retryable) {
      this.#d.error(err, conv);
      return false;
    }
    await new Promise<void>((resolve) => this.#d.clock.setTimeout(resolve, fullJitterDelayMs(attempt, this.#d.backoff, this.#d.random)));
    return this.#session === session;
  }
}
