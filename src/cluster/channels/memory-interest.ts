import { ClusterError } from '../errors.js';
import type { ChannelInterest } from './interest.js';
import { instrument, type InterestOp } from './metrics.js';
import { checkChannel, checkEndpoint, checkTtlMs } from './validate.js';

export interface MemoryChannelInterestOptions {
  /** Wall-clock ms; injectable so unit tests drive expiry without sleeping. */
  now?: () => number;
}

/**
 * The channel-interest registry in process memory: tests that run several nodes in one process
 * share one instance, as nodes share one Redis. (An embedded node does not need one: it has no other
 * node to ask about, so src/cluster/channel-delivery.ts hands every post to all its shards.)
 * Expired entries are dropped when their channel is touched.
 */
export class MemoryChannelInterest implements ChannelInterest {
  readonly impl = 'memory';
  private readonly now: () => number;
  private readonly channels = new Map<string, Map<string, number>>();

  constructor(opts: MemoryChannelInterestOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  add(channel: string, endpoint: string, ttlMs: number): Promise<boolean> {
    return this.op('add', () => {
      checkChannel(channel);
      checkEndpoint(endpoint);
      checkTtlMs(ttlMs);
      return this.put(channel, endpoint, ttlMs, this.now());
    });
  }

  remove(channel: string, endpoint: string): Promise<boolean> {
    return this.op('remove', () => {
      checkChannel(channel);
      checkEndpoint(endpoint);
      const eps = this.prune(channel, this.now());
      if (eps === undefined || !eps.delete(endpoint)) return false;
      if (eps.size === 0) this.channels.delete(channel);
      return true;
    });
  }

  refresh(channels: readonly string[], endpoint: string, ttlMs: number): Promise<void> {
    return this.op('refresh', () => {
      for (const c of channels) checkChannel(c);
      checkEndpoint(endpoint);
      checkTtlMs(ttlMs);
      const now = this.now();
      for (const c of channels) this.put(c, endpoint, ttlMs, now);
    });
  }

  list(channel: string): Promise<string[]> {
    return this.op('list', () => {
      checkChannel(channel);
      return [...(this.prune(channel, this.now())?.keys() ?? [])];
    });
  }

  private put(channel: string, endpoint: string, ttlMs: number, now: number): boolean {
    let eps = this.prune(channel, now);
    if (eps === undefined) this.channels.set(channel, (eps = new Map()));
    const fresh = !eps.has(endpoint);
    eps.set(endpoint, now + ttlMs);
    return fresh;
  }

  private prune(channel: string, now: number): Map<string, number> | undefined {
    const eps = this.channels.get(channel);
    if (eps === undefined) return undefined;
    for (const [ep, exp] of eps) if (exp <= now) eps.delete(ep);
    if (eps.size > 0) return eps;
    this.channels.delete(channel);
    return undefined;
  }

  private op<T>(op: InterestOp, fn: () => T): Promise<T> {
    return instrument('memory', op, internal, async () => fn());
  }
}

function internal(err: unknown): ClusterError {
  return new ClusterError('cluster.internal', `memory channel interest: ${String(err)}`, err);
}
