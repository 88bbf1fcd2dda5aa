import type { SessionConn, SessionEntry, SessionRefresh, SessionRegistry } from './sessions.js';
import { ClusterError } from '../errors.js';
import { instrument, type SessionsOp } from './metrics.js';
import { checkConn, checkId, checkTtlMs } from './validate.js';

export interface MemorySessionsOptions {
  /** Wall-clock ms; injectable so unit tests drive expiry without sleeping. */
  now?: () => number;
}

interface Entry extends SessionConn {
  device: string;
  expiresAtMs: number;
}

/**
 * A user's devices: the entry itself while the user has one device (the common case, and no Map
 * per user then), a Map by device once there are more.
 */
type Devices = Entry | Map<string, Entry>;

/** Distinct node ids kept for interning; beyond this, ids are stored as given. */
const MAX_INTERNED_NODES = 4096;

/**
 * The session registry of a single-node deployment: same contract as the Redis one. Expired
 * entries are dropped when their user is touched (as in Redis, where put prunes), so memory is
 * bounded by the users seen since their last expiry. Kept compact, as an embedded node holds one
 * entry per connection (the main thread's copy, src/cluster/presence/port-presence.ts): no Map for
 * a user with one device, and node ids interned (every call over a port brings a fresh copy).
 */
export class MemorySessions implements SessionRegistry {
  readonly impl = 'memory';
  private readonly now: () => number;
  private readonly users = new Map<string, Devices>();
  private readonly nodes = new Map<string, string>();

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
      const devices = this.prune(user, now);
      const prev = devices === undefined ? undefined : entryOf(devices, device);
      const e: Entry = { device, node: this.intern(conn.node), connId: conn.connId, expiresAtMs: now + ttlMs };
      if (devices === undefined || (!(devices instanceof Map) && devices.device === device)) this.users.set(user, e);
      else if (devices instanceof Map) devices.set(device, e);
      else this.users.set(user, new Map([[devices.device, devices], [device, e]]));
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
      const e = devices === undefined ? undefined : entryOf(devices, device);
      if (devices === undefined || e === undefined || !same(e, conn)) return false;
      if (devices instanceof Map) {
        devices.delete(device);
        this.compact(user, devices);
      } else this.users.delete(user);
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
        const devices = this.prune(r.user, now);
        const e = devices === undefined ? undefined : entryOf(devices, r.device);
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
      const all = devices instanceof Map ? [...devices.values()] : [devices];
      return all.map((e) => ({ device: e.device, node: e.node, connId: e.connId, expiresAtMs: e.expiresAtMs }));
    });
  }

  /** The user's live entries, with expired ones deleted; undefined when none is left. */
  private prune(user: string, now: number): Devices | undefined {
    const devices = this.users.get(user);
    if (devices === undefined) return undefined;
    if (!(devices instanceof Map)) {
      if (devices.expiresAtMs > now) return devices;
      this.users.delete(user);
      return undefined;
    }
    for (const [device, e] of devices) if (e.expiresAtMs <= now) devices.delete(device);
    return this.compact(user, devices);
  }

  /** Stores a user's Map back as its one entry (or nothing) when it shrank to one (or none). */
  private compact(user: string, devices: Map<string, Entry>): Devices | undefined {
    if (devices.size > 1) return devices;
    const only = devices.values().next().value as Entry | undefined;
    if (only === undefined) this.users.delete(user);
    else this.users.set(user, only);
    return only;
  }

  private intern(node: string): string {
    const known = this.nodes.get(node);
    if (known !== undefined) return known;
    if (this.nodes.size < MAX_INTERNED_NODES) this.nodes.set(node, node);
    return node;
  }

  private op<T>(op: SessionsOp, fn: () => T): Promise<T> {
    return instrument('memory', op, internal, async () => fn());
  }
}

function entryOf(devices: Devices, device: string): Entry | undefined {
  if (devices instanceof Map) return devices.get(device);
  return devices.device === device ? devices : undefined;
}

function same(a: SessionConn, b: SessionConn): boolean {
  return a.node === b.node && a.connId === b.connId;
}

function internal(err: unknown): ClusterError {
  return new ClusterError('cluster.internal', `memory sessions: ${String(err)}`, err);
}
