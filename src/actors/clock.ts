/**
 * Time for the actor layer, injectable so unit tests drive passivation, retries and cursor flushes
 * with a manual clock instead of sleeping.
 */
export interface TimerHandle {
  readonly __timer: unique symbol;
}

export interface Clock {
  /** Wall-clock milliseconds (epochs, message timestamps, latency metrics). */
  now(): number;
  /** Calls `fn` once after `ms`. Timers never keep the process alive on their own. */
  setTimer(ms: number, fn: () => void): TimerHandle;
  /** Cancels a timer; a no-op when it already fired or was cleared. */
  clearTimer(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t as unknown as TimerHandle;
  },
  clearTimer(handle) {
    clearTimeout(handle as unknown as NodeJS.Timeout);
  },
};

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. `advance(ms)` fires due timers in time order (ties in
 * creation order), including timers that fired timers schedule within the window.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: ManualTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const timer = { id: ++this.seq, at: this.t + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id as unknown as TimerHandle;
  }

  clearTimer(handle: TimerHandle): void {
    const id = handle as unknown as number;
    this.timers = this.timers.filter((x) => x.id !== id);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.timers.length;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const x of this.timers) {
        if (x.at <= end && (next === undefined || x.at < next.at || (x.at === next.at && x.id < next.id))) next = x;
      }
      if (next === undefined) break;
      const fired = next;
      this.timers = this.timers.filter((x) => x !== fired);
      this.t = Math.max(this.t, fired.at);
      fired.fn();
    }
    this.t = end;
  }
}
