import { MemoryBus, MemoryBusHub } from '../bus/memory-bus.js';
import { PresenceService, type PresenceServiceOptions } from './presence-service.js';
import { PRESENCE_DEFAULTS, type Presence, type PresenceInfo } from './presence.js';
import { onKey, seenKey, watchersKey, type PresenceState } from './state.js';

/**
 * In-process presence for single-node mode and tests: several "nodes" in one process share one
 * MemoryPresenceHub, as nodes share Redis. Same contract and the same logical layout as the Redis
 * state (state.ts); expiry is checked against the clock on every read, and expired entries are
 * swept at most once a minute on writes, so memory stays bounded by live state.
 */
export class MemoryPresenceHub {
  /** Carries presence events; may be shared with the node-frame bus (channels are namespaced). */
  readonly bus: MemoryBusHub;
  /** @internal */ readonly online = new Map<string, { node: string; expiresAtMs: number }>();
  /** @internal */ readonly seen = new Map<string, { ms: number; expiresAtMs: number }>();
  /** @internal target → (node → entry expiry) */
  readonly watchers = new Map<string, Map<string, number>>();
  private lastSweepMs = 0;

  constructor(opts: { bus?: MemoryBusHub } = {}) {
    this.bus = opts.bus ?? new MemoryBusHub();
  }

  /** The stored keys, named as in Redis (without prefix), expired ones left out. */
  keys(nowMs = Date.now()): string[] {
    const out: string[] = [];
    for (const [user, e] of this.online) if (e.expiresAtMs > nowMs) out.push(onKey(user));
    for (const [user, e] of this.seen) if (e.expiresAtMs > nowMs) out.push(seenKey(user));
    for (const [target, nodes] of this.watchers) {
      if ([...nodes.values()].some((exp) => exp > nowMs)) out.push(watchersKey(target));
    }
    return out.sort();
  }

  /** @internal */
  sweep(nowMs: number): void {
    if (nowMs - this.lastSweepMs < 60_000) return;
    this.lastSweepMs = nowMs;
    for (const [k, e] of this.online) if (e.expiresAtMs <= nowMs) this.online.delete(k);
    for (const [k, e] of this.seen) if (e.expiresAtMs <= nowMs) this.seen.delete(k);
    for (const [target, nodes] of this.watchers) {
      for (const [node, exp] of nodes) if (exp <= nowMs) nodes.delete(node);
      if (nodes.size === 0) this.watchers.delete(target);
    }
  }
}

export class MemoryPresenceState implements PresenceState {
  /** Node ids seen, so each online entry shares one string (calls over a port bring fresh copies). */
  private readonly nodes = new Map<string, string>();

  constructor(
    private readonly hub: MemoryPresenceHub,
    private readonly lastSeenTtlMs: number = PRESENCE_DEFAULTS.lastSeenTtlMs,
  ) {}

  async setOnline(user: string, node: string, ttlMs: number, nowMs: number): Promise<boolean> {
    this.hub.sweep(nowMs);
    const prev = this.hub.online.get(user);
    this.hub.online.set(user, { node: this.intern(node), expiresAtMs: nowMs + ttlMs });
    this.hub.seen.set(user, { ms: nowMs, expiresAtMs: nowMs + this.lastSeenTtlMs });
    return prev === undefined || prev.expiresAtMs <= nowMs;
  }

  async setOffline(user: string, nowMs: number): Promise<void> {
    this.hub.sweep(nowMs);
    this.hub.online.delete(user);
    this.hub.seen.set(user, { ms: nowMs, expiresAtMs: nowMs + this.lastSeenTtlMs });
  }

  async get(users: readonly string[], nowMs: number): Promise<PresenceInfo[]> {
    return users.map((user) => {
      const on = this.hub.online.get(user);
      const seen = this.hub.seen.get(user);
      return {
        user,
        online: on !== undefined && on.expiresAtMs > nowMs,
        lastSeenMs: seen !== undefined && seen.expiresAtMs > nowMs ? seen.ms : null,
      };
    });
  }

  async addWatchers(targets: readonly string[], node: string, ttlMs: number, nowMs: number): Promise<void> {
    this.hub.sweep(nowMs);
    for (const target of targets) {
      let nodes = this.hub.watchers.get(target);
      if (nodes === undefined) this.hub.watchers.set(target, (nodes = new Map()));
      for (const [n, exp] of nodes) if (exp <= nowMs) nodes.delete(n);
      nodes.set(node, nowMs + ttlMs);
    }
  }

  async removeWatchers(targets: readonly string[], node: string): Promise<void> {
    for (const target of targets) {
      const nodes = this.hub.watchers.get(target);
      if (nodes === undefined) continue;
      nodes.delete(node);
      if (nodes.size === 0) this.hub.watchers.delete(target);
    }
  }

  async watchers(target: string, nowMs: number): Promise<string[]> {
    const nodes = this.hub.watchers.get(target);
    if (nodes === undefined) return [];
    const out: string[] = [];
    for (const [node, exp] of nodes) if (exp > nowMs) out.push(node);
    return out;
  }

  async close(): Promise<void> {}

  private intern(node: string): string {
    const known = this.nodes.get(node);
    if (known !== undefined) return known;
    if (this.nodes.size < 4096) this.nodes.set(node, node);
    return node;
  }
}

export interface MemoryPresenceOptions extends Omit<PresenceServiceOptions, 'state' | 'bus'> {
  lastSeenTtlMs?: number;
}

export function createMemoryPresence(hub: MemoryPresenceHub, opts: MemoryPresenceOptions = {}): Presence {
  const { lastSeenTtlMs, ...service } = opts;
  return new PresenceService({
    ...service,
    state: new MemoryPresenceState(hub, lastSeenTtlMs),
    bus: new MemoryBus(hub.bus, { purpose: 'presence' }),
  });
}
