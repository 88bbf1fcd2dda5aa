import { assertNodeId, type Bus, type BusSubscription } from '../bus/bus.js';
import { ClusterError } from '../errors.js';
import { decodeEvent, encodeEvent, isId } from './events.js';
import { presenceMetrics, type PresenceEventType } from './metrics.js';
import {
  PRESENCE_DEFAULTS,
  type Presence,
  type PresenceEvent,
  type PresenceInfo,
  type PresenceListener,
  type TypingState,
  type UserWatchResult,
  type Watcher,
  type WatchResult,
} from './presence.js';
import { convTarget, userTarget, type PresenceState } from './state.js';
import { WatchIndex } from './watch-index.js';

/**
 * The Presence contract (presence.ts) over a stored state (memory or Redis) and a presence bus. Both
 * implementations are this class with a different PresenceState and Bus, so caps, the local watch
 * index and event routing behave the same everywhere.
 */
export interface PresenceServiceOptions {
  state: PresenceState;
  /** A bus with purpose `presence`; the service owns it and closes it. */
  bus: Bus;
  /** Lifetime of a node's watcher entry without renewal. Default 60 s. */
  watchTtlMs?: number;
  /**
   * How often the node re-stores its watcher entries. Default watchTtlMs / 3. 0 turns renewal off:
   * only for tests and fault injection (a node that stopped renewing, as after a crash).
   */
  renewIntervalMs?: number;
  /** Server clock for last seen and entry expiry. Default Date.now. */
  now?: () => number;
}

/** Targets stored per call during renewal, so one pipeline never grows without bound. */
const RENEW_BATCH = 1_000;

export class PresenceService implements Presence {
  private readonly state: PresenceState;
  private readonly bus: Bus;
  private readonly watchTtlMs: number;
  private readonly now: () => number;
  private readonly index = new WatchIndex();
  private readonly listeners = new Map<string, { onEvent: PresenceListener; sub?: BusSubscription }>();
  private readonly timer: NodeJS.Timeout | undefined;
  private renewing = false;
  private closed = false;

  constructor(opts: PresenceServiceOptions) {
    this.state = opts.state;
    this.bus = opts.bus;
    this.watchTtlMs = opts.watchTtlMs ?? PRESENCE_DEFAULTS.watchTtlMs;
    checkPositive(this.watchTtlMs, 'watchTtlMs');
    this.now = opts.now ?? Date.now;
    const every = opts.renewIntervalMs ?? Math.max(1, Math.floor(this.watchTtlMs / 3));
    if (every > 0) {
      this.timer = setInterval(() => void this.renew(), every);
      this.timer.unref();
    }
  }

  async setOnline(user: string, node: string, ttlMs: number): Promise<void> {
    this.checkOpen();
    checkId(user, 'user');
    assertNodeId(node);
    checkPositive(ttlMs, 'ttlMs');
    const now = this.now();
    const transition = await this.state.setOnline(user, node, ttlMs, now);
    presenceMetrics.update('online');
    if (transition) await this.notify({ type: 'presence', user, online: true, lastSeenMs: now }, 'online');
  }

  async setOffline(user: string): Promise<void> {
    this.checkOpen();
    checkId(user, 'user');
    const now = this.now();
    await this.state.setOffline(user, now);
    presenceMetrics.update('offline');
    await this.notify({ type: 'presence', user, online: false, lastSeenMs: now }, 'offline');
  }

  async get(users: readonly string[]): Promise<PresenceInfo[]> {
    this.checkOpen();
    for (const u of users) checkId(u, 'user');
    return users.length === 0 ? [] : this.state.get(users, this.now());
  }

  async listen(node: string, onEvent: PresenceListener): Promise<{ unsubscribe(): Promise<void> }> {
    this.checkOpen();
    assertNodeId(node);
    if (this.listeners.has(node)) throw new ClusterError('cluster.invalid', `node ${node} already has a presence listener`);
    const entry: { onEvent: PresenceListener; sub?: BusSubscription } = { onEvent };
    this.listeners.set(node, entry);
    try {
      entry.sub = await this.bus.subscribe(node, (bytes) => this.onFrame(node, bytes));
    } catch (err) {
      this.listeners.delete(node);
      throw err;
    }
    return {
      unsubscribe: async () => {
        if (this.listeners.get(node) !== entry) return;
        this.listeners.delete(node);
        const targets = this.index.dropNode(node);
        await entry.sub?.unsubscribe();
        if (targets.length > 0) await this.state.removeWatchers(targets, node);
      },
    };
  }

  async watch(watcher: Watcher, users: readonly string[], cap: number): Promise<UserWatchResult> {
    for (const u of users) checkId(u, 'user');
    const r = await this.addWatches(watcher, users.map(userTarget), cap);
    if (r.result !== 'ok') return r;
    return { ...r, presence: await this.get(users) };
  }

  async watchConversations(watcher: Watcher, convs: readonly string[], cap: number): Promise<WatchResult> {
    for (const c of convs) checkId(c, 'conversation');
    return this.addWatches(watcher, convs.map(convTarget), cap);
  }

  async unwatch(watcher: Watcher, users: readonly string[]): Promise<void> {
    await this.removeWatches(watcher, users.map(userTarget));
  }

  async unwatchConversations(watcher: Watcher, convs: readonly string[]): Promise<void> {
    await this.removeWatches(watcher, convs.map(convTarget));
  }

  async unwatchAll(watcher: Watcher): Promise<void> {
    checkWatcher(watcher);
    const gone = this.index.removeAll(watcher.node, watcher.connId);
    if (gone.length > 0 && !this.closed) await this.state.removeWatchers(gone, watcher.node);
  }

  async typing(conv: string, user: string, device: string, state: TypingState): Promise<number> {
    this.checkOpen();
    checkId(conv, 'conversation');
    checkId(user, 'user');
    checkId(device, 'device');
    if (state !== 'typing' && state !== 'paused') throw new ClusterError('cluster.invalid', `invalid typing state ${String(state)}`);
    // Read-only on purpose: typing writes no key anywhere.
    const nodes = await this.state.watchers(convTarget(conv), this.now());
    if (nodes.length === 0) return 0;
    await this.bus.publishMany(nodes, encodeEvent({ type: 'typing', conv, user, device, state }));
    presenceMetrics.event(state);
    return nodes.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const nodes = [...this.listeners.keys()];
    this.listeners.clear();
    // Best effort: entries we cannot remove now expire after watchTtlMs.
    await Promise.allSettled(
      nodes.map((node) => {
        const targets = this.index.dropNode(node);
        return targets.length > 0 ? this.state.removeWatchers(targets, node) : Promise.resolve();
      }),
    );
    await this.bus.close();
    await this.state.close();
  }

  private async addWatches(watcher: Watcher, targets: string[], cap: number): Promise<WatchResult> {
    this.checkOpen();
    checkWatcher(watcher);
    if (!Number.isSafeInteger(cap) || cap < 1) throw new ClusterError('cluster.invalid', `invalid watch cap ${cap}`);
    const { node, connId } = watcher;
    if (!this.listeners.has(node)) {
      throw new ClusterError('cluster.invalid', `node ${node} has no presence listener on this instance`);
    }
    const watching = this.index.count(node, connId);
    if (watching + this.index.countNew(node, connId, targets) > cap) {
      presenceMetrics.watch('over_cap');
      return { result: 'over_cap', watching, cap };
    }
    // The index changes before the await, so concurrent watches of one connection see each other.
    const { added, newForNode } = this.index.add(node, connId, targets);
    if (newForNode.length > 0) {
      try {
        await this.state.addWatchers(newForNode, node, this.watchTtlMs, this.now());
      } catch (err) {
        this.index.remove(node, connId, added);
        throw err;
      }
    }
    presenceMetrics.watch('ok');
    return { result: 'ok', watching: this.index.count(node, connId) };
  }

  /** Local removal always happens; a failed stored removal rejects, and that entry expires later. */
  private async removeWatches(watcher: Watcher, targets: string[]): Promise<void> {
    checkWatcher(watcher);
    const gone = this.index.remove(watcher.node, watcher.connId, targets);
    if (gone.length > 0 && !this.closed) await this.state.removeWatchers(gone, watcher.node);
  }

  /**
   * Publishes a presence change to the nodes watching the user. Best effort: the change itself is
   * stored already, and an event that cannot be sent (counted by the bus metrics) only leaves a
   * stale indicator until the watcher's next chat open.
   */
  private async notify(event: PresenceEvent & { type: 'presence' }, type: PresenceEventType): Promise<void> {
    try {
      const nodes = await this.state.watchers(userTarget(event.user), event.lastSeenMs);
      if (nodes.length === 0) return;
      await this.bus.publishMany(nodes, encodeEvent(event));
      presenceMetrics.event(type);
    } catch {
      // See above: losing an event is allowed by the contract.
    }
  }

  private onFrame(node: string, bytes: Uint8Array): void {
    const listener = this.listeners.get(node);
    const event = decodeEvent(bytes);
    if (listener === undefined || event === undefined) return;
    const target = event.type === 'presence' ? userTarget(event.user) : convTarget(event.conv);
    const conns = this.index.connsWatching(node, target);
    // Empty when the node's stored entry outlived its last local watcher (it expires on its own).
    if (conns.length > 0) listener.onEvent(event, conns);
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.closed) return;
    this.renewing = true;
    try {
      for (const [node, targets] of this.index.targetsByNode()) {
        for (let i = 0; i < targets.length; i += RENEW_BATCH) {
          await this.state.addWatchers(targets.slice(i, i + RENEW_BATCH), node, this.watchTtlMs, this.now());
        }
      }
    } catch {
      // Redis is down: the next tick tries again; entries last watchTtlMs, three ticks.
    } finally {
      this.renewing = false;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new ClusterError('cluster.unavailable', 'presence is closed');
  }
}

function checkId(v: string, what: string): void {
  if (!isId(v)) throw new ClusterError('cluster.invalid', `invalid ${what} id ${JSON.stringify(v)}`);
}

function checkWatcher(w: Watcher): void {
  assertNodeId(w.node);
  checkId(w.connId, 'connection');
}

function checkPositive(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new ClusterError('cluster.invalid', `${what} must be a positive integer, got ${v}`);
}
