import type { SessionConn, SessionEntry, SessionRefresh, SessionRegistry } from './sessions.js';
import { ClusterError } from '../errors.js';
import { instrument, type SessionsOp } from './metrics.js';
import { checkConn, checkId, checkTtlMs } from './validate.js';

export interface MemorySessionsOptions {
  /** Wall-clock ms; injectable so unit tests drive expiry without sleeping. */
  now?: () => number;
}

interface Entry extends SessionConn {
  expiresAtMs: number;
}

/**
 * The session registry of a single-node deployment: same contract as the Redis one. Expired
 * entries are dropped when their user is touched (as in Redis, where put prunes), so memory is
 * bounded by the users seen since their last expiry.
 */
export class MemorySessions implements SessionRegistry {
  readonly impl = 'memory';
  private readonly now: () => number;
  private readonly users = new Map<string, Map<string, Entry>>();

  constructor(opts: MemorySessionsOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  put(user: string, device: string, conn: SessionConn, ttlMs: number): Promise<{ replaced: SessionConn | null }> {
    return this.op('put', () => {
      checkId('user', user);
      checkId('device', device);
      checkConn(conn);
      checkTtlMs(ttlMs);
      const now = this.now();
      const devices = this.prune(user, now) ?? new Map<string, Entry>();
      this.users.set(user, devices);
      const prev = devices.get(device);
      devices.set(device, { node: conn.node, connId: conn.connId, expiresAtMs: now + ttlMs });
      const replaced = prev === undefined || same(prev, conn) ? null : { node: prev.node, connId: prev.connId };
      return { replaced };
    });
  }

  remove(user: string, device: string, conn: SessionConn): Promise<boolean> {
    return this.op('remove', () => {
      checkId('user', user);
      checkId('device', device);
      checkConn(conn);
      const devices = this.prune(user, this.now());
      const e = devices?.get(device);
      if (devices === undefined || e === undefined || !same(e, conn)) return false;
      devices.delete(device);
      if (devices.size === 0) this.users.delete(user);
      return true;
    });
  }

  refresh(entries: readonly SessionRefresh[], ttlMs: number): Promise<boolean[]> {
    return this.op('refresh', () => {
      for (const r of entries) {
        checkId('user', r.user);
        checkId('device', r.device);
        checkConn(r.conn);
      }
      checkTtlMs(ttlMs);
      const now = this.now();
      return entries.map((r) => {
        const e = this.prune(r.user, now)?.get(r.device);
        if (e === undefined || !same(e, r.conn)) return false;
        e.expiresAtMs = now + ttlMs;
        return true;
      });
    });
  }

  list(user: string): Promise<SessionEntry[]> {
    return this.op('list', () => {
      checkId('user', user);
      const devices = this.prune(user, this.now());
      if (devices === undefined) return [];
      return [...devices].map(([device, e]) => ({ device, node: e.node, connId: e.connId, expiresAtMs: e.expiresAtMs }));
    });
  }

  /** The user's live entries, with expired ones deleted; undefined when none is left. */
  private prune(user: string, now: number): Map<string, Entry> | undefined {
    const devices = this.users.get(user);
    if (devices === undefined) return undefined;
    for (const [device, e] of devices) if (e.expiresAtMs <= now) devices.delete(device);
    if (devices.size > 0) return devices;
    this.users.delete(user);
    return undefined;
  }

  private op<T>(op: SessionsOp, fn: () => T): Promise<T> {
    return instrument('memory', op, internal, async () => fn());
  }
}

function same(a: SessionConn, b: SessionConn): boolean {
  return a.node === b.node && a.connId === b.connId;
}

function internal(err: unknown): ClusterError {
  return new ClusterError('cluster.internal', `memory sessions: ${String(err)}`, err);
}
