/**
 * Routes actor messages and connection frames within a node: to the local host or sink when this
 * shard owns the target, else over the ShardLink as a thread frame. Stateless: any code on the
 * shard (actors, their promise callbacks, the session handler) may call it at any time.
 */
import type { ServerFrame } from '../protocol/client-frames.js';
import { shardOf, type ActorKind } from './address.js';
import type { ActorHost } from './host.js';
import type { ActorLog } from './log.js';
import type { ActorMessages } from './messages.js';
import { actorMetrics } from './metrics.js';
import type { ConnectionSink, PushResult, SessionRef } from './session.js';
import type { ShardLink } from './shard-link.js';
import { decodeThreadFrame, encodeThreadFrame, type ThreadFrame } from './thread-frames.js';

/** A push to a socket on another shard: handed to the link, outcome unknown here. */
export type RoutedPushResult = PushResult | 'remote';

export interface RouterOptions {
  shard: number;
  shardCount: number;
  nodeId: string;
  link: ShardLink;
  sink: ConnectionSink<ServerFrame>;
  log: ActorLog;
}

export class Router {
  private host: ActorHost<ActorMessages> | null = null;
  private onAttached: (conn: SessionRef) => void = () => {};

  constructor(private readonly opts: RouterOptions) {}

  bind(host: ActorHost<ActorMessages>, onAttached: (conn: SessionRef) => void): void {
    this.host = host;
    this.onAttached = onAttached;
  }

  shardOf(key: string): number {
    return shardOf(key, this.opts.shardCount);
  }

  tell<K extends ActorKind>(kind: K, key: string, msg: ActorMessages[K]): void {
    const shard = shardOf(key, this.opts.shardCount);
    if (shard === this.opts.shard) {
      this.localHost().tell(kind, key, msg);
      return;
    }
    this.post(shard, { v: 1, t: 'actor', kind, key, msg } as ThreadFrame);
  }

  push(conn: SessionRef, frame: ServerFrame): RoutedPushResult {
    if (!this.reachable(conn)) return 'closed';
    if (conn.shard === this.opts.shard) return this.opts.sink.push(conn, frame);
    this.post(conn.shard, { v: 1, t: 'push', conn, frame });
    return 'remote';
  }

  close(conn: SessionRef, code: number, reason: string): void {
    if (!this.reachable(conn)) return;
    if (conn.shard === this.opts.shard) this.opts.sink.close(conn, code, reason);
    else this.post(conn.shard, { v: 1, t: 'close', conn, code, reason });
  }

  /** Tells the connection's shard that the user actor registered the session. */
  attached(conn: SessionRef): void {
    if (!this.reachable(conn)) return;
    if (conn.shard === this.opts.shard) this.onAttached(conn);
    else this.post(conn.shard, { v: 1, t: 'attached', conn });
  }

  /** Handles bytes from the ShardLink. Never throws: a bad frame is logged and counted. */
  receive(bytes: Uint8Array): void {
    let frame: ThreadFrame;
    try {
      frame = decodeThreadFrame(bytes);
    } catch (err) {
      actorMetrics.linkFrames.inc({ type: 'unknown', direction: 'invalid' });
      this.opts.log.error({ err }, 'dropped an invalid thread frame');
      return;
    }
    actorMetrics.linkFrames.inc({ type: frame.t, direction: 'in' });
    switch (frame.t) {
      case 'actor':
        if (frame.kind === 'conv') this.localHost().tell('conv', frame.key, frame.msg);
        else this.localHost().tell('user', frame.key, frame.msg);
        return;
      case 'push':
        // The outcome stays here: the user actor keeps the delivery pending until a dack, and a
        // closed socket ends with `closed` -> detach, which drops it.
        this.opts.sink.push(frame.conn, frame.frame);
        return;
      case 'close':
        this.opts.sink.close(frame.conn, frame.code, frame.reason);
        return;
      case 'attached':
        this.onAttached(frame.conn);
        return;
      default: {
        const never: never = frame;
        throw new Error(`unhandled thread frame ${JSON.stringify(never)}`);
      }
    }
  }

  private reachable(conn: SessionRef): boolean {
    if (conn.node === this.opts.nodeId) return true;
    // Cross-node routing arrives with the cluster (directory + bus); until then the session is
    // unreachable, which every caller treats like a closed connection (the device will sync).
    this.opts.log.warn({ node: conn.node }, 'connection on another node is not reachable');
    return false;
  }

  private post(shard: number, frame: ThreadFrame): void {
    actorMetrics.linkFrames.inc({ type: frame.t, direction: 'out' });
    this.opts.link.post(shard, encodeThreadFrame(frame));
  }

  private localHost(): ActorHost<ActorMessages> {
    if (this.host === null) throw new Error('router used before bind()');
    return this.host;
  }
}
