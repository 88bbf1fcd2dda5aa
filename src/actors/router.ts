/**
 * Routes actor messages and connection frames: to the local host or sink when this shard owns the
 * target, over the ShardLink as a thread frame to another shard of this node, and through the
 * cluster layer (ClusterRoutes, implemented by src/cluster/routing.ts) to other nodes. Any code on
 * the shard (actors, their promise callbacks, the session handler) may call it at any time.
 *
 * Placement: within a node an actor's home shard is hash(key) mod shardCount. Conversation actors
 * are placed across nodes by the directory: only the home shard of a conversation talks to the
 * directory about it (ClusterRoutes.routeConv), so one thread per node decides for each address.
 * User actors are node-local: each node that holds sockets of a user runs that user's actor for
 * those sockets; a deliver or receipt for a user goes to the local actor and, through
 * ClusterRoutes.fanOutUser, to the other nodes where the session registry lists the user's devices.
 * Without ClusterRoutes (unit tests of the actor layer) the router is single-node and conversation
 * actors are activated on their home shard with no directory.
 */
import type { ServerFrame } from '../protocol/client-frames.js';
import { shardOf, type ActorKind } from './address.js';
import type { ActorHost } from './host.js';
import type { ActorLog } from './log.js';
import type { ActorMessages, ConvMsg, UserMsg } from './messages.js';
import type { ErrorCode } from '../protocol/codes.js';
import { dacksOf } from './dack-batcher.js';
import { errorFor } from './answers.js';
import { actorMetrics, convMetrics } from './metrics.js';
import type { ConnectionSink, PushResult, SessionRef } from './session.js';
import type { ShardLink } from './shard-link.js';
import { decodeThreadFrame, encodeThreadFrame, type ChannelThreadFrame, type ThreadFrame } from './thread-frames.js';

/** A push to a socket on another shard: handed to the link, outcome unknown here. */
export type RoutedPushResult = PushResult | 'remote';

/**
 * The cluster side of routing (src/cluster/routing.ts). Every method returns at once; outcomes come
 * back as actor messages or error frames to the sessions concerned, never as exceptions.
 */
export interface ClusterRoutes {
  /**
   * This shard is the in-node home of conversation `key`: delivers to the local activation when this
   * thread holds the directory lease, else resolves the owner (registering when there is none) and
   * forwards. `hops` is how many times the message was forwarded between nodes already.
   */
  routeConv(key: string, msg: ConvMsg, hops: number): void;
  /** Sends a thread frame to shard `shard` of another node (over the bus). */
  sendToNode(node: string, shard: number, frame: ThreadFrame): void;
  /** A deliver or receipt for `user` is also sent to the user's other nodes (batched per fan-out). */
  fanOutUser(user: string, msg: UserMsg): void;
  /**
   * A socket of this shard opened: registers it in the session registry so other nodes' fan-outs
   * find it. Resolves once stored or once storing failed (soft state); never rejects.
   */
  sessionOpened(session: SessionRef): Promise<void>;
  sessionClosed(session: SessionRef): void;
}

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
  /** Cross-node routing; null for a single node without a directory (actor-layer tests). */
  private cluster: ClusterRoutes | null = null;
  /** Live channel delivery (src/cluster/channel-delivery.ts); null: channel frames are dropped. */
  private channelFrames: ((frame: ChannelThreadFrame) => void) | null = null;

  /** Plugs in the handler of `channel` and `chsub` frames (from the link or the bus). */
  useChannels(handler: (frame: ChannelThreadFrame) => void): void {
    this.channelFrames = handler;
  }

  get shard(): number {
    return this.opts.shard;
  }

  get shardCount(): number {
    return this.opts.shardCount;
  }

  /** Posts a thread frame to another shard of this node over the ShardLink (at-most-once). */
  postToShard(shard: number, frame: ThreadFrame): void {
    this.post(shard, frame);
  }

  /** Plugs in cross-node routing (before any message is routed). */
  useCluster(cluster: ClusterRoutes): void {
    this.cluster = cluster;
  }

  get nodeId(): string {
    return this.opts.nodeId;
  }

  constructor(private readonly opts: RouterOptions) {}

  bind(host: ActorHost<ActorMessages>, onAttached: (conn: SessionRef) => void): void {
    this.host = host;
    this.onAttached = onAttached;
  }

  shardOf(key: string): number {
    return shardOf(key, this.opts.shardCount);
  }

  tell<K extends ActorKind>(kind: K, key: string, msg: ActorMessages[K]): void {
    if (kind === 'conv') {
      this.tellConv(key, msg as ConvMsg, 0);
      return;
    }
    const m = msg as UserMsg;
    // Deliveries and receipts come from conversation actors: the user may have devices on other
    // nodes too. Everything else for a user actor (attach, dack, ...) comes from a local session.
    if (this.cluster !== null && (m.t === 'deliver' || m.t === 'receipt')) this.cluster.fanOutUser(key, m);
    this.tellLocalUser(key, m);
  }

  /**
   * One message to many user actors (a group's fan-out): like `tell` for each user, except that the
   * users on another shard thread of this node get it in one `users` frame per shard (one encode of
   * the message and its bodies per shard, not per member).
   */
  tellUsers(users: Iterable<string>, msg: UserMsg): void {
    const { shard: mine, shardCount } = this.opts;
    const fanOut = this.cluster !== null && (msg.t === 'deliver' || msg.t === 'receipt');
    const others: string[][] | null = shardCount > 1 ? [] : null;
    for (const user of users) {
      if (fanOut) this.cluster!.fanOutUser(user, msg);
      const shard = others === null ? mine : shardOf(user, shardCount);
      if (shard === mine) this.localHost().tell('user', user, msg);
      else (others![shard] ??= []).push(user);
    }
    if (others === null) return;
    for (let shard = 0; shard < others.length; shard++) {
      const list = others[shard];
      if (list !== undefined) this.post(shard, { v: 1, t: 'users', items: [{ users: list, msg }] });
    }
  }

  /** The node-local user actor of `user` (no fan-out to other nodes). */
  tellLocalUser(user: string, msg: UserMsg): void {
    const shard = shardOf(user, this.opts.shardCount);
    if (shard === this.opts.shard) this.localHost().tell('user', user, msg);
    else this.post(shard, { v: 1, t: 'actor', kind: 'user', key: user, msg });
  }

  /** A conversation message with `hops` forwards between nodes behind it. */
  tellConv(key: string, msg: ConvMsg, hops: number): void {
    const shard = shardOf(key, this.opts.shardCount);
    if (shard !== this.opts.shard) {
      this.post(shard, hops > 0 ? { v: 1, t: 'actor', kind: 'conv', key, msg, hops } : { v: 1, t: 'actor', kind: 'conv', key, msg });
    } else if (this.cluster !== null) this.cluster.routeConv(key, msg, hops);
    else this.localHost().tell('conv', key, msg);
  }

  /** Delivers to the local activation (the cluster layer checked that this thread owns it). */
  tellLocalConv(key: string, msg: ConvMsg): void {
    this.localHost().tell('conv', key, msg);
  }

  isConvActive(key: string): boolean {
    return this.localHost().isActive('conv', key);
  }

  /**
   * Ends the local activation of `key` (its lease was lost). Without `handOff` queued messages go to
   * a fresh local activation; with it, the messages the activation held (sends queued for or in its
   * group commit, then its mailbox) are passed to `handOff` instead, to be routed to the new owner.
   */
  deactivateConv(key: string, reason: string, handOff?: (msgs: ConvMsg[]) => void): void {
    this.localHost().deactivate('conv', key, reason, handOff);
  }

  /**
   * Answers a conversation message that cannot be routed with an error frame to its session.
   * Internal messages (commit results) never travel, so they have nobody to answer.
   */
  answerConv(msg: ConvMsg, code: ErrorCode, detail?: string): void {
    switch (msg.t) {
      case 'send':
        convMetrics.sent.inc({ result: code });
        this.push(msg.session, errorFor(code, msg.id, detail));
        return;
      case 'read':
        this.push(msg.session, errorFor(code, undefined, detail));
        return;
      case 'delivered':
        for (const d of dacksOf(msg)) this.push(d.session, errorFor(code, undefined, detail));
        return;
      case 'committed':
      case 'commit_failed':
      case 'fanout':
        return;
    }
  }

  push(conn: SessionRef, frame: ServerFrame): RoutedPushResult {
    if (conn.node !== this.opts.nodeId) return this.remote(conn, { v: 1, t: 'push', conn, frame }) ? 'remote' : 'closed';
    if (conn.shard === this.opts.shard) return this.opts.sink.push(conn, frame);
    this.post(conn.shard, { v: 1, t: 'push', conn, frame });
    return 'remote';
  }

  close(conn: SessionRef, code: number, reason: string): void {
    if (conn.node !== this.opts.nodeId) {
      this.remote(conn, { v: 1, t: 'close', conn, code, reason });
      return;
    }
    if (conn.shard === this.opts.shard) this.opts.sink.close(conn, code, reason);
    else this.post(conn.shard, { v: 1, t: 'close', conn, code, reason });
  }

  /** Tells the connection's shard that the user actor registered the session. */
  attached(conn: SessionRef): void {
    // User actors are node-local: the session's own node always confirms it.
    if (conn.node !== this.opts.nodeId) return;
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
        if (frame.kind === 'conv') this.tellConv(frame.key, frame.msg, frame.hops ?? 0);
        else this.tellLocalUser(frame.key, frame.msg);
        return;
      case 'users':
        for (const item of frame.items) for (const user of item.users) this.tellLocalUser(user, item.msg);
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
      case 'channel':
      case 'chsub':
        this.channelFrames?.(frame);
        return;
      default: {
        const never: never = frame;
        throw new Error(`unhandled thread frame ${JSON.stringify(never)}`);
      }
    }
  }

  /** Sends a push or close to a socket on another node; false when there is no cluster to do it. */
  private remote(conn: SessionRef, frame: ThreadFrame): boolean {
    if (this.cluster === null) {
      // Without a cluster the session is unreachable, which every caller treats like a closed
      // connection (the device will sync).
      this.opts.log.warn({ node: conn.node }, 'connection on another node is not reachable');
      return false;
    }
    this.cluster.sendToNode(conn.node, conn.shard, frame);
    return true;
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
