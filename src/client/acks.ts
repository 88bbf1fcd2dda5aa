import type { DackFrame, ReadFrame } from '../protocol/client-frames.js';
import type { Clock, TimerHandle } from './timing.js';

/**
 * Batches `dack` and `read` frames. Both are cumulative, so many updates of one conversation within
 * `delayMs` collapse into one frame with the highest seq: a burst of 500 synced messages costs one
 * dack, not 500 (which would also eat the connection's frame budget).
 *
 * Neither frame has an answer, so one sent just before a connection dropped may be lost. After a
 * reconnect everything sent on the previous session is sent again (cursors only move forward on the
 * server, so a repeat is harmless); older sessions' frames were repeated on that session already.
 */
export interface AckDeps {
  clock: Clock;
  delayMs: number;
  /** The highest seq the device holds contiguously in `conv`. */
  have(conv: string): number | undefined;
  /** Sends when a session is open; false otherwise (the frame is kept for later). */
  post(frame: DackFrame | ReadFrame): boolean;
}

export class AckBatcher {
  readonly #d: AckDeps;
  readonly #dirty = new Set<string>();
  readonly #dacked = new Map<string, number>();
  readonly #reads = new Map<string, { seq: number; sent: boolean }>();
  #dackedThisSession = new Set<string>();
  #readThisSession = new Set<string>();
  #timer: TimerHandle | undefined;

  constructor(deps: AckDeps) {
    this.#d = deps;
  }

  /** `have` of `conv` moved: dack it soon. */
  dack(conv: string): void {
    this.#dirty.add(conv);
    this.#schedule();
  }

  /** Marks `conv` read up to `seq`; false when it was already read that far. */
  read(conv: string, seq: number): boolean {
    const current = this.#reads.get(conv);
    if (current !== undefined && seq <= current.seq) return false;
    this.#reads.set(conv, { seq, sent: false });
    this.#schedule();
    return true;
  }

  readSeq(conv: string): number {
    return this.#reads.get(conv)?.seq ?? 0;
  }

  onOpen(): void {
    this.#schedule();
  }

  /**
   * The server refused a frame without an id (rate_limited on a dack or read): we cannot tell which,
   * so everything sent on this session goes again after the batching delay.
   */
  resend(): void {
    this.onDown();
    this.#schedule();
  }

  onDown(): void {
    for (const conv of this.#dackedThisSession) {
      this.#dacked.delete(conv);
      this.#dirty.add(conv);
    }
    for (const conv of this.#readThisSession) {
      const r = this.#reads.get(conv);
      if (r !== undefined) r.sent = false;
    }
    this.#dackedThisSession = new Set();
    this.#readThisSession = new Set();
  }

  /** Sends what is due now (also called by the timer). */
  flush(): void {
    if (this.#timer !== undefined) this.#d.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const conv of this.#dirty) {
      const have = this.#d.have(conv);
      if (have === undefined || have <= (this.#dacked.get(conv) ?? 0)) {
        this.#dirty.delete(conv);
        continue;
      }
      if (!this.#d.post({ t: 'dack', conv, seq: have })) return;
      this.#dirty.delete(conv);
      this.#dacked.set(conv, have);
      this.#dackedThisSession.add(conv);
    }
    for (const [conv, r] of this.#reads) {
      if (r.sent) continue;
      if (!this.#d.post({ t: 'read', conv, seq: r.seq })) return;
      r.sent = true;
      this.#readThisSession.add(conv);
    }
  }

  close(): void {
    if (this.#timer !== undefined) this.#d.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#timer === undefined) this.#timer = this.#d.clock.setTimeout(() => this.flush(), this.#d.delayMs);
  }
}
