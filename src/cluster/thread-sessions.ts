/**
 * Where other nodes find a shard thread and its sockets (part of ClusterRouting,
 * src/cluster/routing.ts): the thread's bus endpoint `<nodeId>.<shard>`, the connection ids of its
 * sockets in the session registry, and the registry entries of those sockets.
 *
 * Sessions: each socket this thread accepts is put in the registry (user, device -> node and
 * `<shard>:<connId>`), refreshed by the heartbeat (re-put when the entry was lost), removed on close.
 * A put that replaces a connection on another node closes that one with 4502 (replaced).
 */
import type { Router } from '../actors/router.js';
import type { SessionRef } from '../actors/session.js';
import type { ActorLog } from '../actors/log.js';
import { CLOSE, CLOSE_REASONS } from '../protocol/codes.js';
import { routingMetrics } from './routing-metrics.js';
import type { SessionConn, SessionRegistry } from './sessions/sessions.js';

/** The bus endpoint (and directory node) of a shard thread. */
export function endpointOf(node: string, shard: number): string {
  return `${node}.${shard}`;
}

/** The connection id of a socket in the session registry: `<shard>:<connId>`. */
export function registryConnId(s: SessionRef): string {
  return `${s.shard}:${s.connId}`;
}

/** The socket of a session registry entry (see registryConnId); null when not of that form. */
export function parseRegistryConn(conn: SessionConn): { shard: number; connId: number } | null {
  const m = /^(\d+):(\d+)$/.exec(conn.connId);
  return m === null ? null : { shard: Number(m[1]), connId: Number(m[2]) };
}

export interface ThreadSessionsOptions {
  nodeId: string;
  sessions: SessionRegistry;
  sessionTtlMs: number;
  log: ActorLog;
  /** The router of this thread (throws before ClusterRouting.start). */
  router: () => Router;
}

/** The registry entries of this thread's sockets. */
export class ThreadSessions {
  /** This thread's sockets by connection id (unique per thread incarnation). */
  private readonly local = new Map<number, SessionRef>();
  private stopped = false;

  constructor(private readonly o: ThreadSessionsOptions) {}

  /** Registers a socket of this thread; resolves when stored (or when storing failed: soft state). */
  async socketOpened(s: SessionRef): Promise<void> {
    this.local.set(s.connId, s);
    await this.put(s);
  }

  socketClosed(s: SessionRef): void {
    const id = registryConnId(s);
    if (!this.local.delete(s.connId)) return;
    if (this.stopped) return;
    this.o.sessions.remove(s.user, s.device, { node: this.o.nodeId, connId: id }).then(
      () => routingMetrics.sessionOps.inc({ op: 'remove', result: 'ok' }),
      () => routingMetrics.sessionOps.inc({ op: 'remove', result: 'failed' }), // expires after sessionTtlMs
    );
  }

  private async put(s: SessionRef): Promise<void> {
    try {
      const { replaced } = await this.o.sessions.put(s.user, s.device, { node: this.o.nodeId, connId: registryConnId(s) }, this.o.sessionTtlMs);
      routingMetrics.sessionOps.inc({ op: 'put', result: 'ok' });
      // A replaced connection on this node is closed by the user actor; one elsewhere, from here.
      if (replaced !== null && replaced.node !== this.o.nodeId) {
        const old = parseRegistryConn(replaced);
        if (old !== null) this.o.router().close({ node: replaced.node, shard: old.shard, connId: old.connId, user: s.user, device: s.device }, CLOSE.replaced, CLOSE_REASONS[CLOSE.replaced]);
      }
    } catch (err) {
      routingMetrics.sessionOps.inc({ op: 'put', result: 'failed' });
      this.o.log.warn({ err }, 'session registry put failed; the device gets live messages from this node only until the next heartbeat');
    }
  }

  /** Heartbeat, part 1: refreshes the entries of every socket of this thread in one call. */
  refresh(): { refs: SessionRef[]; refreshed: Promise<boolean[]> } {
    const refs = [...this.local.values()];
    const refreshed =
      refs.length === 0
        ? Promise.resolve([] as boolean[])
        : this.o.sessions.refresh(
            refs.map((s) => ({ user: s.user, device: s.device, conn: { node: this.o.nodeId, connId: registryConnId(s) } })),
            this.o.sessionTtlMs,
          );
    return { refs, refreshed };
  }

  /** Heartbeat, part 2: puts again the entries of `refs` that the registry had lost. */
  refreshed(refs: SessionRef[], result: PromiseSettledResult<boolean[]>): void {
    if (result.status === 'fulfilled') {
      routingMetrics.sessionOps.inc({ op: 'refresh', result: 'ok' });
      result.value.forEach((ok, i) => {
        const s = refs[i]!;
        if (!ok && this.local.get(s.connId) === s) void this.put(s);
      });
    } else routingMetrics.sessionOps.inc({ op: 'refresh', result: 'failed' });
  }

  /** Closed sockets are no longer removed from the registry (their entries expire). */
  close(): void {
    this.stopped = true;
  }

  get size(): number {
    return this.local.size;
  }
}
