/**
 * Per-connection limit counters. Pure (time is passed in) and unit-tested with a fake clock.
 *
 * Memory: a node holds hundreds of thousands of connections, so the counters are a few number
 * fields on the connection's own state (ConnState implements RateFields and ProtocolErrorFields),
 * and the limits (rate, burst, window) are shared per shard in a RateSpec, not copied into every
 * connection. The classes below hold the same fields for use on their own (tests, other callers).
 */

export type RateVerdict = 'ok' | 'limited' | 'abuse';

/** The shared part of a frame rate limit: one object per shard, not per connection. */
export interface RateSpec {
  ratePerS: number;
  burst: number;
  /** 1000 / ratePerS: ms of budget one frame uses. */
  intervalMs: number;
}

export function rateSpec(ratePerS: number, burst: number): RateSpec {
  if (!(ratePerS > 0) || !(burst >= 1)) throw new Error(`a frame rate limit needs ratePerS > 0 and burst >= 1 (got ${ratePerS}, ${burst})`);
  return { ratePerS, burst, intervalMs: 1000 / ratePerS };
}

/** The per-connection part of a frame rate limit. */
export interface RateFields {
  /** Theoretical arrival time of the next frame (GCRA): a full bucket is any value <= now. */
  rateTatMs: number;
  /** Frames rejected in the current one-second window, and when that window started. */
  rateRejected: number;
  rateWindowMs: number;
}

/**
 * A token bucket refilled at `ratePerS` per second up to `burst`, in its GCRA form: one timestamp
 * instead of a token count and a refill time (same verdicts). A frame without a token is rejected
 * (`limited`); when more than `ratePerS` frames were rejected within one second, the client is
 * ignoring rate_limited errors (`abuse`: close 4003, see CLOSE.rateLimited).
 */
export function takeFrame(st: RateFields, spec: RateSpec, nowMs: number): RateVerdict {
  const tat = st.rateTatMs > nowMs ? st.rateTatMs : nowMs;
  // Conforming when at most burst - 1 frames' worth of budget is already used ahead of now (a small
  // epsilon absorbs float error of 1000 / ratePerS).
  if (tat - nowMs <= (spec.burst - 1) * spec.intervalMs + 1e-6) {
    st.rateTatMs = tat + spec.intervalMs;
    return 'ok';
  }
  if (nowMs - st.rateWindowMs >= 1000) {
    st.rateWindowMs = nowMs;
    st.rateRejected = 0;
  }
  st.rateRejected++;
  return st.rateRejected > spec.ratePerS ? 'abuse' : 'limited';
}

/** The per-connection part of a fixed-window event counter (protocol errors). */
export interface ProtocolErrorFields {
  protoErrors: number;
  protoWindowMs: number;
}

/** Counts one event; true when the count passed `limit` within the current window of `windowMs`. */
export function hitWindow(st: ProtocolErrorFields, limit: number, windowMs: number, nowMs: number): boolean {
  if (nowMs - st.protoWindowMs >= windowMs) {
    st.protoWindowMs = nowMs;
    st.protoErrors = 0;
  }
  st.protoErrors++;
  return st.protoErrors > limit;
}

/** A standalone frame rate limiter (the same rule as `takeFrame`, with its own fields). */
export class FrameRateLimiter implements RateFields {
  rateTatMs: number;
  rateRejected = 0;
  rateWindowMs: number;
  private readonly spec: RateSpec;

  constructor(ratePerS: number, burst: number, nowMs: number) {
    this.spec = rateSpec(ratePerS, burst);
    this.rateTatMs = nowMs;
    this.rateWindowMs = nowMs;
  }

  take(nowMs: number): RateVerdict {
    return takeFrame(this, this.spec, nowMs);
  }
}

/** Counts events in a fixed window; `hit` is true when the count passed `limit` within the window. */
export class WindowCounter implements ProtocolErrorFields {
  protoErrors = 0;
  protoWindowMs: number;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    nowMs: number,
  ) {
    this.protoWindowMs = nowMs;
  }

  hit(nowMs: number): boolean {
    return hitWindow(this, this.limit, this.windowMs, nowMs);
  }
}
