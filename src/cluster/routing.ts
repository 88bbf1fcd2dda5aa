/**
 * Cross-node routing of one shard thread: conversation placement through the directory, frames to
 * other nodes over the bus, the session registry of this thread's sockets, and the heartbeat that
 * keeps leases and session entries alive. Implements the router's ClusterRoutes and the conversation
 * actors' EpochSource. The same code runs with the memory implementations (embedded mode, one node)
 * and the Redis ones (cluster mode).
 *
 * Threads and channels. Every shard thread is its own endpoint `<nodeId>.<shard>`: it subscribes the
 * bus channel of that name and registers in the directory under it, so a frame for an actor or a
 * socket goes straight to the thread that holds it, with no hop through the main thread. Within a
 * node, a conversation's home shard is hash(key) mod shardCount, and only that thread talks to the
 * directory about the conversation; other shards of the node post to it over the ShardLink.
 *
 * Conversations (routeConv, on the home shard):
 * - this thread holds a live lease: the local activation gets the message;
 * - a cached remote owner: the message is published to its endpoint; 0 receivers (the node is
 *   gone) drops the cache entry and resolves again; the cache lives one heartbeat;
 * - otherwise `register` (first writer wins): won -> activate here with the registration's epoch as
 *   the store fence (EpochSource.next); lost -> forward to the winner. Messages that arrive while a
 *   registration is in flight wait behind it (bounded), in order.
 * - A message forwarded more than MAX_HOPS times, or that cannot be routed (directory or bus down,
 *   draining with no owner), is answered `cluster_unavailable` (retryable, nothing written).
 *
 * Leases: the heartbeat (cluster.heartbeatMs) renews every lease of the thread with one renewMany.
 * A lease is valid until `sent + leaseMs - margin` on this thread's monotonic clock, where `sent`
 * is when the last successful register or renew was *sent*. A renew answering false, or a lease
 * that ran out (Redis unreachable), ends the local activation at once: it stops acking, and what it
 * holds (the sends of its commit in flight and its queued sends, then its mailbox: sends, dacks,
 * reads) is routed again like a new message, so it reaches the new owner (resolved through the
 * directory, registering when nobody owns the conversation; `cluster_unavailable` only when the
 * directory cannot be reached). The in-flight commit's own result is dropped with the activation:
 * the new owner's append answers those sends, `dup` if the old commit had landed (appends are
 * idempotent by cmid), and the new owner's higher epoch fences the old commit otherwise. The store's
 * epoch fence is what keeps a stale owner from overwriting anything (DESIGN.md 2.7). An owned
 * conversation whose activation has been gone for a lease is given back (unregister).
 *
 * Identity: a thread's directory activation is `<endpoint>/<incarnation>`, where the incarnation
 * is random per process start (shared by the process's shard threads and kept by a shard thread the
 * supervisor restarts). At start each thread claims `node/<endpoint>` in the directory under that
 * activation, renewed by the heartbeat with the leases and given back on close. Two live processes
 * with the same node id would share bus channels and leases, so the second one refuses to start:
 * another incarnation's claim is waited for one lease plus a heartbeat (a predecessor killed with
 * kill -9 stops renewing and its claim expires; a clean stop gives it back at once), and a claim
 * still held then belongs to a live process: start() throws `cluster.invalid` naming the node id.
 * Leases of another incarnation can neither be renewed nor re-won by this one (they expire).
 *
 * Drain (SIGTERM): beginDrain() stops taking new ownerships; after the actors finished their
 * in-flight commits, releaseAll() unregisters every lease so another node takes over at the next
 * message, without waiting for expiry. After a kill -9 the leases expire instead.
 *
 * Users: user actors are node-local. A deliver or receipt for a user goes to the local user actor
 * (the router does that) and, through fanOutUser, to every other node that the session registry
 * lists for the user: all such messages of one event-loop turn (every conversation actor's
 * fan-out to its members in that turn) are batched into one `users` frame per node, after one
 * batched registry lookup of all their users (one socket write), so a conversation publishes at
 * most once per (fan-out, node), never once per member. Fan-out frames of this thread leave in
 * fan-out order.
 *
 * Sessions: each socket this thread accepts is put in the registry (user, device -> node and
 * `<shard>:<connId>`), refreshed by the heartbeat (re-put when the entry was lost), removed on close.
 * A put that replaces a connection on another node closes that one with 4502 (replaced).
 *
 * Push (cluster mode): the fan-out's registry lookup also decides the push wake-up of each receiving
 * user of a deliver, so that a user online on another node costs no push job (an enqueue and a job
 * run that would only find the user online): no live device on any node -> `wake.notify` (the user
 * actor here has none either); a live device somewhere -> no push from here: a user actor that holds
 * the device (here or on its node) asks for one itself when every push finds its socket gone. A
 * failed lookup asks for the push (the job checks the registry again when it runs). The rule of
 * docs/PUSH.md is unchanged: a user is pushed only when none of its devices has a live session.
 */
import { randomBytes } from 'node:crypto';
import type { ClusterRoutes, Router } from '../actors/router.js';
import type { EpochSource } from '../actors/epochs.js';
import type { ConvMsg, UserMsg } from '../actors/messages.js';
import type { SessionRef } from '../actors/session.js';
import { encodeThreadFrame, type ThreadFrame, type UserBatchItem } from '../actors/thread-frames.js';
import type { ActorLog } from '../actors/log.js';
import { CLOSE, CLOSE_REASONS } from '../protocol/codes.js';
import type { Bus, BusSubscription } from './bus/bus.js';
import type { Activation, Directory } from './directory/directory.js';
import { ClusterError } from './errors.js';
import { routingMetrics, type ConvRouteResult } from './routing-metrics.js';
import { pushMetrics } from '../jobs/push/metrics.js';
import type { SessionConn, SessionRegistry } from './sessions/sessions.js';

export interface ClusterRoutingOptions {
  nodeId: string;
  shard: number;
  directory: Directory;
  /** The frames bus (purpose `frames`). */
  bus: Bus;
  sessions: SessionRegistry;
  heartbeatMs: number;
  sessionTtlMs: number;
  /**
   * Embedded mode (memory parts): no other node exists, so user fan-outs skip the registry lookups
   * they would make for nothing (they sit on the delivery path of every message).
   */
  singleNode?: boolean;
  log: ActorLog;
  /**
   * This process's incarnation: random per process start, the same for every shard thread of the
   * process and for a shard thread the supervisor restarts (see "Identity" above). Default: random
   * per ClusterRouting (tests that start "nodes" in one process).
   */
  incarnation?: string;
  /**
   * Push wake-ups decided by the fan-out (cluster mode only; see "Push" above). The user actors of
   * this node then only ask for a push when they had devices whose sockets all turned out gone.
   */
  wake?: { notify(userId: string, conversationId: string, seq: number): unknown };
  /** Monotonic ms; default performance.now. */
  now?: () => number;
  /** Waits `ms` (the start-up wait for a predecessor's node claim to expire); default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

/** Forwards between nodes before a message is answered cluster_unavailable. */
export const MAX_HOPS = 3;
/** Messages waiting behind one conversation's registration; more are answered cluster_unavailable. */
const MAX_WAITING_PER_CONV = 1024;
/** Remote owners remembered; beyond this the cache starts over (it is only a cache). */
const MAX_REMOTE_CACHE = 100_000;

interface Owned {
  epoch: number;
  /** Monotonic ms after which this thread must consider the lease lost. */
  validUntil: number;
  /** When the heartbeat first saw no local activation (null while active). */
  idleSince: number | null;
}

interface Waiting {
  msg: ConvMsg;
  hops: number;
}

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

export class ClusterRouting implements ClusterRoutes, EpochSource {
  readonly endpoint: string;
  /** This thread's identity in the directory (every lease it holds is under it). */
  readonly activation: Activation;
  private readonly now: () => number;
  private readonly margin: number;
  private router: Router | null = null;
  private sub: BusSubscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly owned = new Map<string, Owned>();
  private readonly remote = new Map<string, { endpoint: string; at: number }>();
  private readonly resolving = new Map<string, Waiting[]>();
  /** This thread's sockets by connection id (unique per thread incarnation). */
  private readonly localSessions = new Map<number, SessionRef>();
  private fanBatch: Map<unknown, { msg: UserMsg; users: Set<string> }> | null = null;
  private fanChain: Promise<void> = Promise.resolve();
  /** The last flush's publishes (later ones are issued after it on the same connection). */
  private fanPublished: Promise<void> = Promise.resolve();
  /** Directory address of this thread's endpoint claim (see "Identity"). */
  private readonly claimAddress: string;
  /** The claim is held (set at start; the heartbeat renews it and claims it again when lost). */
  private claimed = false;
  private beating = false;
  private draining = false;
  private actorsStopped = false;
  private closed = false;

  constructor(private readonly o: ClusterRoutingOptions) {
    this.endpoint = endpointOf(o.nodeId, o.shard);
    // Per process incarnation (see "Identity"): a shard thread restarted inside the same process wins
    // its predecessor's live entries back at once with the same epoch (the store accepts that as a
    // restart of the same writer; the predecessor thread is dead); another process never can.
    this.activation = { node: this.endpoint, activationId: `${this.endpoint}/${o.incarnation ?? randomBytes(8).toString('hex')}` };
    this.claimAddress = `node/${this.endpoint}`;
    this.now = o.now ?? (() => performance.now());
    // Stop acking a little before the directory could hand the address to someone else.
    this.margin = Math.min(1000, Math.floor(o.directory.leaseMs / 5));
    if (o.heartbeatMs * 3 > o.directory.leaseMs) {
      throw new ClusterError('cluster.invalid', `cluster.heartbeatMs ${o.heartbeatMs} must be at most a third of cluster.leaseMs ${o.directory.leaseMs}`);
    }
  }

  /**
   * Claims this thread's endpoint (see "Identity"; throws `cluster.invalid` when a live process holds
   * it), subscribes the thread's channel (frames go to `router.receive`) and starts the heartbeat.
   */
  async start(router: Router): Promise<void> {
    this.router = router;
    await this.claimEndpoint();
    try {
      this.sub = await this.o.bus.subscribe(this.endpoint, (bytes) => router.receive(bytes));
    } catch (err) {
      // A start that fails here must not leave a claim behind for the retry to wait out.
      this.claimed = false;
      await this.o.directory.unregister(this.claimAddress, this.activation).catch(() => undefined);
      throw err;
    }
    this.timer = setInterval(() => void this.heartbeat(), this.o.heartbeatMs);
    this.timer.unref();
  }

  /**
   * Registers `node/<endpoint>` under this incarnation. Another incarnation's claim is either a dead
   * predecessor's (killed without draining: it stops being renewed and expires within a lease) or a
   * live process started with the same node id (renewed by its heartbeat): wait one lease plus a
   * heartbeat for it to expire, then refuse to start.
   */
  private async claimEndpoint(): Promise<void> {
    const sleep = this.o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const deadline = this.now() + this.o.directory.leaseMs + this.o.heartbeatMs;
    let waited = false;
    for (;;) {
      const r = await this.o.directory.register(this.claimAddress, this.activation);
      if (r.won) {
        this.claimed = true;
        routingMetrics.nodeClaims.inc({ result: waited ? 'won_after_wait' : 'won' });
        return;
      }
      if (this.now() >= deadline) {
        routingMetrics.nodeClaims.inc({ result: 'refused' });
        throw new ClusterError(
          'cluster.invalid',
          `node id ${this.o.nodeId} is in use: shard endpoint ${this.endpoint} is held by the live process incarnation ${r.owner.activationId} (renewed for over a lease); give every running node its own TICKS_NODE_ID`,
        );
      }
      if (!waited) this.o.log.warn({ holder: r.owner.activationId }, 'this node id is still claimed by another process; waiting for its claim to expire (a predecessor killed without draining) or refusing to start (a live process with the same node id)');
      waited = true;
      await sleep(Math.min(this.o.heartbeatMs, Math.max(1, deadline - this.now())));
    }
  }

  // ---- conversations -------------------------------------------------------------------------

  routeConv(key: string, msg: ConvMsg, hops: number): void {
    const router = this.r();
    const own = this.owned.get(key);
    if (own !== undefined) {
      if (this.now() < own.validUntil) {
        // Draining: the activation only finishes what it holds, so the drain ends; the sender
        // retries and reaches the next owner once the lease is given back.
        if (this.draining) return this.unavailable(msg, 'this node is draining');
        count('local');
        router.tellLocalConv(key, msg);
        return;
      }
      this.lose(key, 'expired');
    }
    if (hops > MAX_HOPS) return this.unavailable(msg, 'conversation owner could not be reached');
    const waiting = this.resolving.get(key);
    if (waiting !== undefined) {
      if (waiting.length >= MAX_WAITING_PER_CONV) return this.unavailable(msg, 'conversation is being placed');
      waiting.push({ msg, hops });
      return;
    }
    const cached = this.remote.get(key);
    if (cached !== undefined && this.now() - cached.at < this.o.heartbeatMs) {
      this.forward(key, cached.endpoint, msg, hops);
      return;
    }
    this.resolve(key, { msg, hops });
  }

  /** The fencing epoch of this thread's registration of `conv`; throws when it holds no live lease. */
  next(conv: string): Promise<number> {
    const own = this.owned.get(conv);
    if (own === undefined || this.now() >= own.validUntil || this.actorsStopped) {
      return Promise.reject(new ClusterError('cluster.unavailable', `this node does not own conversation ${conv}`));
    }
    return Promise.resolve(own.epoch);
  }

  private resolve(key: string, first: Waiting): void {
    const address = `conv/${key}`;
    const queue: Waiting[] = [first];
    this.resolving.set(key, queue);
    const sentAt = this.now();
    const draining = this.draining;
    const lookup = draining
      ? this.o.directory.lookup(address).then((owner) => (owner === null ? null : { won: false, owner }))
      : this.o.directory.register(address, this.activation);
    lookup.then(
      (r) => {
        this.resolving.delete(key);
        if (this.closed) {
          for (const w of queue) this.unavailable(w.msg, 'this node is stopping');
        } else if (r === null) {
          for (const w of queue) this.unavailable(w.msg, 'this node is draining and the conversation has no owner');
        } else if (r.won) {
          this.owned.set(key, { epoch: r.owner.epoch, validUntil: sentAt + this.o.directory.leaseMs - this.margin, idleSince: null });
          routingMetrics.owned.set(this.owned.size);
          count('registered');
          for (const w of queue) this.routeConv(key, w.msg, w.hops);
        } else if (r.owner.node === this.endpoint) {
          // Another incarnation of this endpoint (a process killed without draining) still holds the
          // lease until it expires; forwarding would come straight back here. The sender retries.
          for (const w of queue) this.unavailable(w.msg, 'the conversation is still leased to a previous incarnation of this node');
        } else {
          if (this.remote.size >= MAX_REMOTE_CACHE) this.remote.clear();
          this.remote.set(key, { endpoint: r.owner.node, at: this.now() });
          for (const w of queue) this.forward(key, r.owner.node, w.msg, w.hops);
        }
      },
      (err: unknown) => {
        this.resolving.delete(key);
        this.o.log.warn({ err }, 'directory lookup for a conversation failed');
        for (const w of queue) this.unavailable(w.msg, 'the directory could not be reached');
      },
    );
  }

  private forward(key: string, endpoint: string, msg: ConvMsg, hops: number): void {
    const frame: ThreadFrame = { v: 1, t: 'actor', kind: 'conv', key, msg, hops: hops + 1 };
    this.o.bus.publish(endpoint, encodeThreadFrame(frame)).then(
      (receivers) => {
        if (receivers > 0) {
          count('forwarded');
          routingMetrics.nodeFrames.inc({ type: 'actor', result: 'sent' });
          return;
        }
        count('no_receiver');
        routingMetrics.nodeFrames.inc({ type: 'actor', result: 'no_receiver' });
        if (this.remote.get(key)?.endpoint === endpoint) this.remote.delete(key);
        this.routeConv(key, msg, hops + 1);
      },
      (err: unknown) => {
        routingMetrics.nodeFrames.inc({ type: 'actor', result: 'failed' });
        this.o.log.warn({ err }, 'forwarding a conversation message failed');
        this.unavailable(msg, 'the cluster bus could not be reached');
      },
    );
  }

  private unavailable(msg: ConvMsg, detail: string): void {
    count('unavailable');
    this.r().answerConv(msg, 'cluster_unavailable', detail);
  }

  /**
   * The lease is gone: stop acking at once and forward what the activation holds (the sends of its
   * commit in flight and queued ones, then its mailbox) to the new owner, resolved through the
   * directory like any message. Never answered here: the old activation ends without acking.
   */
  private lose(key: string, reason: 'taken_over' | 'expired'): void {
    if (!this.owned.delete(key)) return;
    routingMetrics.owned.set(this.owned.size);
    routingMetrics.leasesLost.inc({ reason });
    this.o.log.warn({ reason }, 'lost a conversation lease; deactivating it');
    this.r().deactivateConv(key, `lease ${reason}`, (msgs) => {
      for (const msg of msgs) {
        if (msg.t === 'committed' || msg.t === 'commit_failed') continue;
        routingMetrics.handedOff.inc({ type: msg.t });
        this.routeConv(key, msg, 0);
      }
    });
  }

  // ---- frames to other nodes -----------------------------------------------------------------

  sendToNode(node: string, shard: number, frame: ThreadFrame): void {
    const type = frame.t;
    this.o.bus.publish(endpointOf(node, shard), encodeThreadFrame(frame)).then(
      (receivers) => routingMetrics.nodeFrames.inc({ type, result: receivers > 0 ? 'sent' : 'no_receiver' }),
      (err: unknown) => {
        // At-most-once like the ShardLink: a lost push is retried by its user actor or replaced by
        // the device's sync; a lost answer is retried by the client under the same cmid.
        routingMetrics.nodeFrames.inc({ type, result: 'failed' });
        this.o.log.debug({ err }, 'a frame to another node was lost');
      },
    );
  }

  fanOutUser(user: string, msg: UserMsg): void {
    if (this.o.singleNode === true) return;
    if (this.fanBatch === null) {
      this.fanBatch = new Map();
      // Flushed once per event-loop turn, not per fan-out: the fan-outs of every commit that
      // completes in the same turn share the session lookups and one frame per node.
      setImmediate(() => this.flushFanOut());
    }
    // One conversation fan-out tells every member with its own message object but the same `msgs`
    // array (deliver) or the same receipt fields: group by those so the frame carries each once.
    const group = msg.t === 'deliver' ? msg.msgs : msg.t === 'receipt' ? `r\u0000${msg.conv}\u0000${msg.kind}\u0000${msg.user}\u0000${msg.device}\u0000${msg.seq}` : msg;
    let g = this.fanBatch.get(group);
    if (g === undefined) this.fanBatch.set(group, (g = { msg, users: new Set() }));
    g.users.add(user);
  }

  private flushFanOut(): void {
    const batch = this.fanBatch;
    this.fanBatch = null;
    if (batch === null || this.closed) return;
    const users = new Set<string>();
    for (const g of batch.values()) for (const u of g.users) users.add(u);
    // Lookups start now, in parallel with earlier flushes; publishing waits for the earlier flushes
    // so that one thread's fan-outs reach each node in order.
    const lookups = this.lookUp([...users]);
    // The chain only orders the *issue* of the publishes: they go out on one Redis connection, which
    // keeps them in order, so a flush does not wait for the previous flush's publishes to be
    // answered (waiting made fan-out throughput one Redis round trip per flush).
    this.fanChain = Promise.all([this.fanChain, lookups]).then(
      ([, found]) => {
        this.fanPublished = this.publishFanOut(batch, found);
        this.wakeOffline(batch, found);
      },
      () => undefined,
    );
  }

  /** The registry entries of `users` (one round trip when the registry has listMany); null on failure. */
  private lookUp(users: string[]): Promise<ReadonlyArray<readonly [string, ReadonlyArray<SessionConn> | null]>> {
    const { sessions } = this.o;
    if (sessions.listMany !== undefined && users.length > 1) {
      return sessions.listMany(users).then(
        (lists) => users.map((u, i) => [u, lists[i] ?? []] as const),
        () => users.map((u) => [u, null] as const),
      );
    }
    return Promise.all(
      users.map((u) =>
        sessions.list(u).then(
          (entries) => [u, entries] as const,
          () => [u, null] as const,
        ),
      ),
    );
  }

  /** The fan-out's push decisions (see "Push" above), from the lookup it made for publishing. */
  private wakeOffline(batch: Map<unknown, { msg: UserMsg; users: Set<string> }>, found: ReadonlyArray<readonly [string, ReadonlyArray<SessionConn> | null]>): void {
    const wake = this.o.wake;
    if (wake === undefined) return;
    let entries: Map<string, ReadonlyArray<SessionConn> | null> | null = null;
    for (const g of batch.values()) {
      const msg = g.msg;
      if (msg.t !== 'deliver') continue;
      entries ??= new Map(found);
      for (const user of g.users) {
        const last = msg.msgs.findLast((e) => e.from !== user);
        if (last === undefined) continue;
        const live = entries.get(user);
        if (live !== undefined && live !== null && live.length > 0) {
          pushMetrics.wakeChecks.inc({ result: 'online' });
          continue;
        }
        pushMetrics.wakeChecks.inc({ result: live === null ? 'lookup_failed' : 'offline' });
        void wake.notify(user, msg.conv, last.seq);
      }
    }
  }

  private async publishFanOut(
    batch: Map<unknown, { msg: UserMsg; users: Set<string> }>,
    found: ReadonlyArray<readonly [string, ReadonlyArray<SessionConn> | null]>,
  ): Promise<void> {
    // node -> the users there, and a shard of that node to address (any: it routes in-node).
    const byNode = new Map<string, { shard: number; users: Set<string> }>();
    for (const [user, entries] of found) {
      for (const e of entries ?? []) {
        if (e.node === this.o.nodeId) continue;
        const conn = parseRegistryConn(e);
        if (conn === null) continue;
        let n = byNode.get(e.node);
        if (n === undefined) byNode.set(e.node, (n = { shard: conn.shard, users: new Set() }));
        n.users.add(user);
      }
    }
    if (byNode.size === 0) return;
    await Promise.all(
      [...byNode].map(([node, { shard, users }]) => {
        const items: UserBatchItem[] = [];
        for (const g of batch.values()) {
          const here = [...g.users].filter((u) => users.has(u));
          if (here.length > 0) items.push({ users: here, msg: g.msg });
        }
        routingMetrics.fanOutNodes.inc();
        return this.o.bus.publish(endpointOf(node, shard), encodeThreadFrame({ v: 1, t: 'users', items })).then(
          (receivers) => routingMetrics.nodeFrames.inc({ type: 'users', result: receivers > 0 ? 'sent' : 'no_receiver' }),
          () => routingMetrics.nodeFrames.inc({ type: 'users', result: 'failed' }),
        );
      }),
    );
  }

  // ---- sessions ------------------------------------------------------------------------------

  /** Registers a socket of this thread; resolves when stored (or when storing failed: soft state). */
  async sessionOpened(s: SessionRef): Promise<void> {
    this.localSessions.set(s.connId, s);
    await this.put(s);
  }

  sessionClosed(s: SessionRef): void {
    const id = registryConnId(s);
    if (!this.localSessions.delete(s.connId)) return;
    if (this.closed) return;
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
        if (old !== null) this.r().close({ node: replaced.node, shard: old.shard, connId: old.connId, user: s.user, device: s.device }, CLOSE.replaced, CLOSE_REASONS[CLOSE.replaced]);
      }
    } catch (err) {
      routingMetrics.sessionOps.inc({ op: 'put', result: 'failed' });
      this.o.log.warn({ err }, 'session registry put failed; the device gets live messages from this node only until the next heartbeat');
    }
  }

  // ---- heartbeat, drain ----------------------------------------------------------------------

  private async heartbeat(): Promise<void> {
    if (this.beating || this.closed) return;
    this.beating = true;
    try {
      const now = this.now();
      const leases: string[] = [];
      for (const [key, own] of [...this.owned]) {
        if (now >= own.validUntil) {
          this.lose(key, 'expired');
          continue;
        }
        if (!this.actorsStopped && !this.r().isConvActive(key)) {
          own.idleSince ??= now;
          if (now - own.idleSince >= this.o.directory.leaseMs) {
            this.release(key, 'idle');
            continue;
          }
        } else own.idleSince = null;
        leases.push(key);
      }
      // The endpoint claim rides first in the same round trip as the conversation leases.
      const renewed = this.o.directory.renewMany([
        { address: this.claimAddress, activation: this.activation },
        ...leases.map((key) => ({ address: `conv/${key}`, activation: this.activation })),
      ]);
      const refs = [...this.localSessions.values()];
      const refreshed =
        refs.length === 0
          ? Promise.resolve([] as boolean[])
          : this.o.sessions.refresh(
              refs.map((s) => ({ user: s.user, device: s.device, conn: { node: this.o.nodeId, connId: registryConnId(s) } })),
              this.o.sessionTtlMs,
            );
      const [r1, r2] = await Promise.allSettled([renewed, refreshed]);
      if (r1.status === 'fulfilled') {
        const [claim, ...convs] = r1.value;
        if (claim !== true) void this.reclaim();
        convs.forEach((ok, i) => {
          const key = leases[i]!;
          const own = this.owned.get(key);
          if (own === undefined) return;
          if (ok) own.validUntil = now + this.o.directory.leaseMs - this.margin;
          else this.lose(key, 'taken_over');
        });
      }
      if (r2.status === 'fulfilled') {
        routingMetrics.sessionOps.inc({ op: 'refresh', result: 'ok' });
        r2.value.forEach((ok, i) => {
          const s = refs[i]!;
          if (!ok && this.localSessions.get(s.connId) === s) void this.put(s);
        });
      } else routingMetrics.sessionOps.inc({ op: 'refresh', result: 'failed' });
      routingMetrics.heartbeats.inc({ result: r1.status === 'fulfilled' && r2.status === 'fulfilled' ? 'ok' : 'failed' });
    } finally {
      this.beating = false;
    }
  }

  /**
   * The endpoint claim was gone at a renew: after a Redis data loss (claimed again at once), or after
   * this process stalled for a whole lease while another process with the same node id started. The
   * latter is a deployment error that cannot be undone from here: it is logged and counted; the
   * conversation leases stay fenced per incarnation, and the store fences by epoch.
   */
  private async reclaim(): Promise<void> {
    try {
      const r = await this.o.directory.register(this.claimAddress, this.activation);
      if (r.won) {
        routingMetrics.nodeClaims.inc({ result: 'reclaimed' });
        if (!this.claimed) this.o.log.warn({}, 'the node id claim came back');
        else this.o.log.warn({}, 'the node id claim was lost in the directory (Redis data loss?) and is claimed again');
        this.claimed = true;
      } else {
        if (this.claimed) this.o.log.error({ holder: r.owner.activationId }, 'another process with this node id took this node’s claim: two live processes share a node id (give every node its own TICKS_NODE_ID)');
        routingMetrics.nodeClaims.inc({ result: 'lost' });
        this.claimed = false;
      }
    } catch (err) {
      this.o.log.warn({ err }, 'claiming the node id again failed; retried at the next heartbeat');
    }
  }

  private release(key: string, reason: 'idle' | 'drain'): Promise<unknown> {
    this.owned.delete(key);
    routingMetrics.owned.set(this.owned.size);
    routingMetrics.released.inc({ reason });
    return this.o.directory.unregister(`conv/${key}`, this.activation).catch((err: unknown) => {
      this.o.log.warn({ err }, 'unregistering a conversation failed; its lease expires instead');
    });
  }

  /** Drain step 1: take no new ownership (messages for conversations not owned here are forwarded). */
  beginDrain(): void {
    this.draining = true;
  }

  /**
   * Drain step 2, after the actors finished their in-flight commits: give every lease back so other
   * nodes take the conversations over at their next message.
   */
  async releaseAll(): Promise<void> {
    this.draining = true;
    this.actorsStopped = true;
    await Promise.all([...this.owned.keys()].map((key) => this.release(key, 'drain')));
  }

  /** Stops the heartbeat and the subscription. Leases not released expire. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    await this.fanChain.catch(() => undefined);
    await this.fanPublished.catch(() => undefined);
    await this.sub?.unsubscribe().catch(() => undefined);
    // A restart under the same node id may start at once (a kill -9 leaves the claim to expire).
    if (this.claimed) await this.o.directory.unregister(this.claimAddress, this.activation).catch(() => undefined);
  }

  stats(): { owned: number; remoteCached: number; sessions: number } {
    return { owned: this.owned.size, remoteCached: this.remote.size, sessions: this.localSessions.size };
  }

  private r(): Router {
    if (this.router === null) throw new Error('cluster routing used before start()');
    return this.router;
  }
}

function count(result: ConvRouteResult): void {
  routingMetrics.convRoutes.inc({ result });
}
