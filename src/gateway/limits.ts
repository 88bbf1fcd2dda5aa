/**
 * Per-connection limit counters. Pure (time is passed in), small (a few numbers per connection, of
 * which there are hundreds of thousands per node), and unit-tested with a fake clock.
 */

export type RateVerdict = 'ok' | 'limited' | 'abuse';

/**
 * Token bucket for client frames: refills `ratePerS` tokens per second up to `burst`. A frame
 * without a token is rejected (`limited`); when more than `ratePerS` frames were rejected within one
 * second, the client is ignoring rate_limited errors (`abuse`: close 4003, see CLOSE.rateLimited).
 */
export class FrameRateLimiter {
  private tokens: number;
  private lastMs: number;
  private rejectedInWindow = 0;
  private windowStartMs: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.lastMs = nowMs;
    this.windowStartMs = nowMs;
  }

  take(nowMs: number): RateVerdict {
    const elapsedMs = nowMs - this.lastMs;
    if (elapsedMs > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsedMs * this.ratePerS) / 1000);
      this.lastMs = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 'ok';
    }
    if (nowMs - this.windowStartMs >= 1000) {
      this.windowStartMs = nowMs;
      this.rejectedInWindow = 0;
    }
    this.rejectedInWindow++;
    return this.rejectedInWindow > this.ratePerS ? 'abuse' : 'limited';
  }
}

/** Counts events in a fixed window; `hit` is true when the count passed `limit` within the window. */
export class WindowCounter {
  private count = 0;
  private startMs: number;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    nowMs: number,
  ) {
    this.startMs = nowMs;
  }

  hit(nowMs: number): boolean {
    if (nowMs - this.startMs >= this.windowMs) {
      this.startMs = nowMs;
      this.count = 0;
    }
    this.count++;
    return this.count > this.limit;
  }
}
