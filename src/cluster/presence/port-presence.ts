/**
 * Embedded-mode presence and session registry for a node with several shard threads: one memory
 * PresenceState and one MemorySessions for the whole node, kept by the main thread, and the presence events carried between threads by the main
 * thread too. Each shard thread runs the ordinary PresenceService (caps, local watch index, events)
 * over a PresenceState and a Bus that forward to the main thread through a `PresenceChannel` (the
 * worker's parent port). The main thread's side is `PresenceHost`.
 *
 * Same contract as the other implementations (presence.ts): only the transport differs. A call the
 * main thread does not answer within the channel's timeout rejects with `cluster.timeout`.
 */
import { ClusterError } from '../errors.js';
import { assertNodeId, publishToEach, type Bus, type BusSubscription, type FrameHandler } from '../bus/bus.js';
import { MemoryBusHub } from '../bus/memory-bus.js';
import { MemoryPresenceHub, MemoryPresenceState } from './memory-presence.js';
import { PresenceService } from './presence-service.js';
import type { Presence } from './presence.js';
import type { PresenceState } from './state.js';
import { MemorySessions } from '../sessions/memory-sessions.js';
import type { SessionConn, SessionEntry, SessionRefresh, SessionRegistry } from '../sessions/sessions.js';

export type PresenceOp = 'setOnline' | 'setOffline' | 'get' | 'addWatchers' | 'removeWatchers' | 'watchers';
const OPS: readonly PresenceOp[] = ['setOnline', 'setOffline', 'get', 'addWatchers', 'removeWatchers', 'watchers'];
export type SessionsOp = 'sessions.put' | 'sessions.remove' | 'sessions.refresh' | 'sessions.list';
const SESSION_OPS: Record<SessionsOp, keyof SessionRegistry> = {
  'sessions.put': 'put',
  'sessions.remove': 'remove',
  'sessions.refresh': 'refresh',
  'sessions.list': 'list',
};

/** The shard thread's link to the main thread. */
export interface PresenceChannel {
  call(op: PresenceOp | SessionsOp, args: unknown[]): Promise<unknown>;
  /** A presence event for the endpoint `node` (`<nodeId>.<shard>`). */
  publish(node: string, bytes: Uint8Array): void;
  /** Events for this thread's endpoints arrive here. */
  onFrame(fn: (node: string, bytes: Uint8Array) => void): void;
}

class PortPresenceState implements PresenceState {
  constructor(private readonly ch: PresenceChannel) {}
  setOnline(user: string, node: string, ttlMs: number, nowMs: number): Promise<boolean> {
    return this.ch.call('setOnline', [user, node, ttlMs, nowMs]) as Promise<boolean>;
  }
  async setOffline(user: string, nowMs: number): Promise<void> {
    await this.ch.call('setOffline', [user, nowMs]);
  }
  get(users: readonly string[], nowMs: number) {
    return this.ch.call('get', [users, nowMs]) as ReturnType<PresenceState['get']>;
  }
  async addWatchers(targets: readonly string[], node: string, ttlMs: number, nowMs: number): Promise<void> {
    await this.ch.call('addWatchers', [targets, node, ttlMs, nowMs]);
  }
  async removeWatchers(targets: readonly string[], node: string): Promise<void> {
    await this.ch.call('removeWatchers', [targets, node]);
  }
  watchers(target: string, nowMs: number): Promise<string[]> {
    return this.ch.call('watchers', [target, nowMs]) as Promise<string[]>;
  }
  async close(): Promise<void> {}
}

/** A presence bus whose every endpoint is a thread of this node, reached through the main thread. */
class PortPresenceBus implements Bus {
  private readonly handlers = new Map<string, FrameHandler>();
  private closed = false;

  constructor(private readonly ch: PresenceChannel) {
    ch.onFrame((node, bytes) => this.handlers.get(node)?.(bytes));
  }

  async subscribe(node: string, onFrame: FrameHandler): Promise<BusSubscription> {
    assertNodeId(node);
    if (this.closed) throw new ClusterError('cluster.unavailable', 'presence bus is closed');
    if (this.handlers.has(node)) throw new ClusterError('cluster.invalid', `node ${node} already has a handler on this bus`);
    this.handlers.set(node, onFrame);
    return {
      node,
      unsubscribe: async () => {
        if (this.handlers.get(node) === onFrame) this.handlers.delete(node);
      },
    };
  }

  async publish(targetNode: string, bytes: Uint8Array): Promise<number> {
    assertNodeId(targetNode);
    if (this.closed) throw new ClusterError('cluster.unavailable', 'presence bus is closed');
    this.ch.publish(targetNode, bytes);
    return 1; // at-most-once; the main thread drops frames for threads that are gone
  }

  publishMany(targets: Iterable<string>, bytes: Uint8Array): Promise<Map<string, number>> {
    return publishToEach(targets, (node) => this.publish(node, bytes));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
  }
}

/** The node-wide session registry, seen from one shard thread in embedded mode. */
class PortSessions implements SessionRegistry {
  readonly impl = 'memory';
  constructor(private readonly ch: PresenceChannel) {}
  put(user: string, device: string, conn: SessionConn, ttlMs: number): Promise<{ replaced: SessionConn | null }> {
    return this.ch.call('sessions.put', [user, device, conn, ttlMs]) as Promise<{ replaced: SessionConn | null }>;
  }
  remove(user: string, device: string, conn: SessionConn): Promise<boolean> {
    return this.ch.call('sessions.remove', [user, device, conn]) as Promise<boolean>;
  }
  refresh(entries: readonly SessionRefresh[], ttlMs: number): Promise<boolean[]> {
    return this.ch.call('sessions.refresh', [entries, ttlMs]) as Promise<boolean[]>;
  }
  list(user: string): Promise<SessionEntry[]> {
    return this.ch.call('sessions.list', [user]) as Promise<SessionEntry[]>;
  }
}

export function createPortSessions(ch: PresenceChannel): SessionRegistry {
  return new PortSessions(ch);
}

/** The presence of one shard thread in embedded mode. */
export function createPortPresence(ch: PresenceChannel): Presence {
  return new PresenceService({ state: new PortPresenceState(ch), bus: new PortPresenceBus(ch) });
}

/**
 * The main thread's side: the node's one memory presence state, and event routing to the thread
 * that owns an endpoint (`deliver(shard, node, bytes)`).
 */
export class PresenceHost {
  private readonly state = new MemoryPresenceState(new MemoryPresenceHub({ bus: new MemoryBusHub() }));
  private readonly sessions = new MemorySessions();

  constructor(
    private readonly nodeId: string,
    private readonly deliver: (shard: number, node: string, bytes: Uint8Array) => void,
  ) {}

  async call(op: string, args: unknown[]): Promise<unknown> {
    if (Object.hasOwn(SESSION_OPS, op)) {
      const fn = (this.sessions as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[SESSION_OPS[op as SessionsOp]]!;
      return fn.apply(this.sessions, args);
    }
    if (!(OPS as readonly string[]).includes(op)) throw new ClusterError('cluster.invalid', `unknown presence op ${op}`);
    const fn = (this.state as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[op]!;
    return fn.apply(this.state, args);
  }

  publish(node: string, bytes: Uint8Array): void {
    const prefix = `${this.nodeId}.`;
    if (!node.startsWith(prefix)) return;
    const shard = Number(node.slice(prefix.length));
    if (Number.isSafeInteger(shard) && shard >= 0) this.deliver(shard, node, bytes);
  }
}
