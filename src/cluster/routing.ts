/**
 * Cross-node routing of one shard thread: conversation placement through the directory, frames to
 * other nodes over the bus, the session registry of this thread's sockets, and the heartbeat that
 * keeps leases and session entries alive. Implements the router's ClusterRoutes and the conversation
 * actors' EpochSource. The same code runs with the memory implementations (embedded mode, one node)
 * and the Redis ones (cluster mode).
 *
 * This file holds the thread's identity, its start, heartbeat and close, and the frames it sends to
 * other nodes; the parts it delegates to live beside it:
 * - conv-routing.ts: conversation placement, leases, hand-off on a lost lease, drain;
 * - user-fanout.ts: fan-out of user messages to the user's other nodes, and push wake-ups;
 * - thread-sessions.ts: endpoint and registry connection ids, the registry entries of the sockets.
 *
 * Threads and channels. Every shard thread is its own endpoint `<nodeId>.<shard>`: it subscribes the
 * bus channel of that name and registers in the directory under it, so a frame for an actor or a
 * socket goes straight to the thread that holds it, with no hop through the main thread. Within a
 * node, a conversation's home shard is hash(key) mod shardCount, and only that thread talks to the
 * directory about the conversation; other shards of the node post to it over the ShardLink.
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
 */
import { randomBytes } from 'node:crypto';
import type { ClusterRoutes, Router } from '../actors/router.js';
import type { EpochSource } from '../actors/epochs.js';
import type { ConvMsg, UserMsg } from '../actors/messages.js';
import type { SessionRef } from '../actors/session.js';
import { encodeThreadFrame, type ThreadFrame } from '../actors/thread-frames.js';
import type { ActorLog } from '../actors/log.js';
import type { Bus, BusSubscription } from './bus/bus.js';
import type { Activation, Directory } from './directory/directory.js';
import { ClusterError } from './errors.js';
import { routingMetrics } from './routing-metrics.js';
import type { SessionRegistry } from './sessions/sessions.js';
import { ConvRouting } from './conv-routing.js';
import { UserFanOut } from './user-fanout.js';
import { endpointOf, ThreadSessions } from './thread-sessions.js';

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
   * Push wake-ups decided by the fan-out (cluster mode only; see "Push" in user-fanout.ts). The user
   * actors of this node then only ask for a push when they had devices whose sockets all turned out gone.
   */
  wake?: { notify(userId: string, conversationId: string, seq: number): unknown };
  /** Monotonic ms; default performance.now. */
  now?: () => number;
  /** Waits `ms` (the start-up wait for a predecessor's node claim to expire); default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

export class ClusterRouting implements ClusterRoutes, EpochSource {
  readonly endpoint: string;
  /** This thread's identity in the directory (every lease it holds is under it). */
  readonly activation: Activation;
  private readonly now: () => number;
  private router: Router | null = null;
  private sub: BusSubscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly convs: ConvRouting;
  private readonly fanOut: UserFanOut;
  private readonly sessions: ThreadSessions;
  /** Directory address of this thread's endpoint claim (see "Identity"). */
  private readonly claimAddress: string;
  /** The claim is held (set at start; the heartbeat renews it and claims it again when lost). */
  private claimed = false;
  private beating = false;
  /** The heartbeat round and the claim-again in flight; close waits for them before giving the claim back. */
  private inflight: Promise<void>[] = [];
  private closed = false;

  constructor(private readonly o: ClusterRoutingOptions) {
    this.endpoint = endpointOf(o.nodeId, o.shard);
    // Per process incarnation (see "Identity"): a shard thread restarted inside the same process wins
    // its predecessor's live entries back at once with the same epoch (the store accepts that as a
    // restart of the same writer; the predecessor thread is dead); another process never can.
    this.activation = { node: this.endpoint, activationId: `${this.endpoint}/${o.incarnation ?? randomBytes(8).toString('hex')}` };
    this.claimAddress = `node/${this.endpoint}`;
    this.now = o.now ?? (() => performance.now());
    if (o.heartbeatMs * 3 > o.directory.leaseMs) {
      throw new ClusterError('cluster.invalid', `cluster.heartbeatMs ${o.heartbeatMs} must be at most a third of cluster.leaseMs ${o.directory.leaseMs}`);
    }
    const router = (): Router => this.r();
    this.convs = new ConvRouting({
      endpoint: this.endpoint,
      activation: this.activation,
      directory: o.directory,
      bus: o.bus,
      heartbeatMs: o.heartbeatMs,
      log: o.log,
      now: this.now,
      // Stop acking a little before the directory could hand the address to someone else.
      margin: Math.min(1000, Math.floor(o.directory.leaseMs / 5)),
      router,
    });
    this.fanOut = new UserFanOut({ nodeId: o.nodeId, bus: o.bus, sessions: o.sessions, singleNode: o.singleNode, wake: o.wake });
    this.sessions = new ThreadSessions({ nodeId: o.nodeId, sessions: o.sessions, sessionTtlMs: o.sessionTtlMs, log: o.log, router });
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
    this.timer = setInterval(() => void this.track(this.heartbeat()), this.o.heartbeatMs);
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

  // ---- conversations (conv-routing.ts), users (user-fanout.ts), sessions (thread-sessions.ts) ----

  routeConv(key: string, msg: ConvMsg, hops: number): void {
    this.convs.routeConv(key, msg, hops);
  }

  next(conv: string): Promise<number> {
    return this.convs.next(conv);
  }

  fanOutUser(user: string, msg: UserMsg): void {
    this.fanOut.fanOutUser(user, msg);
  }

  sessionOpened(s: SessionRef): Promise<void> {
    return this.sessions.socketOpened(s);
  }

  sessionClosed(s: SessionRef): void {
    this.sessions.socketClosed(s);
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

  // ---- heartbeat, drain ----------------------------------------------------------------------

  private track(p: Promise<void>): Promise<void> {
    this.inflight.push(p);
    p.finally(() => (this.inflight = this.inflight.filter((x) => x !== p))).catch(() => undefined);
    return p;
  }

  private async heartbeat(): Promise<void> {
    if (this.beating || this.closed) return;
    this.beating = true;
    try {
      const now = this.now();
      const leases = this.convs.leasesToRenew(now);
      // The endpoint claim rides first in the same round trip as the conversation leases.
      const renewed = this.o.directory.renewMany([
        { address: this.claimAddress, activation: this.activation },
        ...leases.map((key) => ({ address: `conv/${key}`, activation: this.activation })),
      ]);
      const { refs, refreshed } = this.sessions.refresh();
      const [r1, r2] = await Promise.allSettled([renewed, refreshed]);
      if (r1.status === 'fulfilled') {
        const [claim, ...convs] = r1.value;
        if (claim !== true && !this.closed) void this.track(this.reclaim());
        this.convs.renewed(leases, convs, now);
      }
      this.sessions.refreshed(refs, r2);
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

  /** Drain step 1: take no new ownership (see "Drain" in conv-routing.ts). */
  beginDrain(): void {
    this.convs.beginDrain();
  }

  /** Drain step 2, after the actors finished their in-flight commits: give every lease back. */
  releaseAll(): Promise<void> {
    return this.convs.releaseAll();
  }

  /** Stops the heartbeat and the subscription. Leases not released expire. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.convs.close();
    this.sessions.close();
    if (this.timer !== null) clearInterval(this.timer);
    // A renew in flight that found the claim gone (a restarted thread of this process gave it back)
    // would claim it again after the release below: let it land first.
    await Promise.allSettled(this.inflight);
    await this.fanOut.close();
    await this.sub?.unsubscribe().catch(() => undefined);
    // A restart under the same node id may start at once (a kill -9 leaves the claim to expire).
    if (this.claimed) await this.o.directory.unregister(this.claimAddress, this.activation).catch(() => undefined);
  }

  stats(): { owned: number; remoteCached: number; sessions: number } {
    return { ...this.convs.stats(), sessions: this.sessions.size };
  }

  private r(): Router {
    if (this.router === null) throw new Error('cluster routing used before start()');
    return this.router;
  }
}
