/**
 * Time and randomness for the SDK, injectable so tests drive reconnects, retries and batching with a
 * fake clock and a fixed random source.
 */

/** An opaque timer handle (a number in browsers, a Timeout object in Node). */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds; only differences are used, so any monotonic-enough source works. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

export interface BackoffOptions {
  /** Ceiling of the first retry's delay; doubles with every attempt. */
  baseMs: number;
  /** Largest ceiling. */
  capMs: number;
}

/** Reconnect defaults from docs/PROTOCOL.md 3.6: 0.5 s doubling to 30 s. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ baseMs: 500, capMs: 30_000 });

/**
 * Exponential backoff with full jitter: a uniform delay between 0 and
 * min(cap, base * 2^attempt).
 * `attempt` counts from 0. Full jitter (rather than "equal" or no jitter) spreads a reconnect storm
 * after a node crash evenly over the whole window, so the surviving nodes see a flat arrival rate
 * instead of synchronized waves. `random` returns values in [0, 1), like Math.random.
 */
export function fullJitterDelayMs(attempt: number, o: BackoffOptions, random: () => number): number {
  // 2^52 already exceeds any cap; clamping keeps the product finite for absurd attempt counts.
  const ceiling = Math.min(o.capMs, o.baseMs * 2 ** Math.min(Math.max(attempt, 0), 52));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * ceiling);
}
