/**
 * Conversation placement of one shard thread (part of ClusterRouting, src/cluster/routing.ts): the
 * directory leases this thread holds, the owners of other conversations it has seen, and the
 * hand-off of what an activation holds when its lease is lost. Only a conversation's home shard
 * (hash(key) mod shardCount) talks to the directory about it.
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
 * Drain (SIGTERM): beginDrain() stops taking new ownerships; after the actors finished their
 * in-flight commits, releaseAll() unregisters every lease so another node takes over at the next
 * message, without waiting for expiry. After a kill -9 the leases expire instead.
 */
import type { Router } from '../actors/router.js';
import type { EpochSource } from '../actors/epochs.js';
import type { ConvMsg } from '../actors/messages.js';
import { encodeThreadFrame, type ThreadFrame } from '../actors/thread-frames.js';
import type { ActorLog } from '../actors/log.js';
import type { Bus } from './bus/bus.js';
import type { Activation, Directory } from './directory/directory.js';
import { ClusterError } from './errors.js';
import { routingMetrics, type ConvRouteResult } from './routing-metrics.js';

export interface ConvRoutingOptions {
  /** This thread's bus endpoint (`<nodeId>.<shard>`). */
  endpoint: string;
  /** This thread's identity in the directory (every lease it holds is under it). */
  activation: Activation;
  directory: Directory;
  /** The frames bus (purpose `frames`). */
  bus: Bus;
  log: ActorLog;
  /** The router of this thread (throws before ClusterRouting.start). */
  router: () => Router;
  heartbeatMs: number;
  /** How long before a lease's end this thread stops acking (ms). */
  margin: number;
  /** Monotonic ms. */
  now: () => number;
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

export class ConvRouting implements EpochSource {
  private readonly owned = new Map<string, Owned>();
  private readonly remote = new Map<string, { endpoint: string; at: number }>();
  private readonly resolving = new Map<string, Waiting[]>();
  private draining = false;
  private actorsStopped = false;
  private closed = false;

  constructor(private readonly o: ConvRoutingOptions) {}

  routeConv(key: string, msg: ConvMsg, hops: number): void {
    const router = this.o.router();
    const own = this.owned.get(key);
    if (own !== undefined) {
      if (this.o.now() < own.validUntil) {
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
    if (cached !== undefined && this.o.now() - cached.at < this.o.heartbeatMs) {
      this.forward(key, cached.endpoint, msg, hops);
      return;
    }
    this.resolve(key, { msg, hops });
  }

  /** The fencing epoch of this thread's registration of `conv`; throws when it holds no live lease. */
  next(conv: string): Promise<number> {
    const own = this.owned.get(conv);
    if (own === undefined || this.o.now() >= own.validUntil || this.actorsStopped) {
      return Promise.reject(new ClusterError('cluster.unavailable', `this node does not own conversation ${conv}`));
    }
    return Promise.resolve(own.epoch);
  }

  private resolve(key: string, first: Waiting): void {
    const address = `conv/${key}`;
    const queue: Waiting[] = [first];
    this.resolving.set(key, queue);
    const sentAt = this.o.now();
    const draining = this.draining;
    const lookup = draining
      ? this.o.directory.lookup(address).then((owner) => (owner === null ? null : { won: false, owner }))
      : this.o.directory.register(address, this.o.activation);
    lookup.then(
      (r) => {
        this.resolving.delete(key);
        if (this.closed) {
          for (const w of queue) this.unavailable(w.msg, 'this node is stopping');
        } else if (r === null) {
          for (const w of queue) this.unavailable(w.msg, 'this node is draining and the conversation has no owner');
        } else if (r.won) {
          this.owned.set(key, { epoch: r.owner.epoch, validUntil: sentAt + this.o.directory.leaseMs - this.o.margin, idleSince: null });
          routingMetrics.owned.set(this.owned.size);
          count('registered');
          for (const w of queue) this.routeConv(key, w.msg, w.hops);
        } else if (r.owner.node === this.o.endpoint) {
          // Another incarnation of this endpoint (a process killed without draining) still holds the
          // lease until it expires; forwarding would come straight back here. The sender retries.
          for (const w of queue) this.unavailable(w.msg, 'the conversation is still leased to a previous incarnation of this node');
        } else {
          if (this.remote.size >= MAX_REMOTE_CACHE) this.remote.clear();
          this.remote.set(key, { endpoint: r.owner.node, at: this.o.now() });
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
    this.o.router().answerConv(msg, 'cluster_unavailable', detail);
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
    this.o.router().deactivateConv(key, `lease ${reason}`, (msgs) => {
      for (const msg of msgs) {
        if (msg.t === 'committed' || msg.t === 'commit_failed' || msg.t === 'fanout') continue;
        routingMetrics.handedOff.inc({ type: msg.t });
        this.routeConv(key, msg, 0);
      }
    });
  }

  // ---- heartbeat ------------------------------------------------------------------------------

  /**
   * Heartbeat, before the renew: ends the leases that ran out, gives back those whose activation has
   * been gone for a lease, and returns the keys of the leases to renew.
   */
  leasesToRenew(now: number): string[] {
    const leases: string[] = [];
    for (const [key, own] of [...this.owned]) {
      if (now >= own.validUntil) {
        this.lose(key, 'expired');
        continue;
      }
      if (!this.actorsStopped && !this.o.router().isConvActive(key)) {
        own.idleSince ??= now;
        if (now - own.idleSince >= this.o.directory.leaseMs) {
          this.release(key, 'idle');
          continue;
        }
      } else own.idleSince = null;
      leases.push(key);
    }
    return leases;
  }

  /** Heartbeat, after the renew sent at `now`: `ok[i]` answers `leases[i]` (false: taken over). */
  renewed(leases: string[], ok: boolean[], now: number): void {
    ok.forEach((won, i) => {
      const key = leases[i]!;
      const own = this.owned.get(key);
      if (own === undefined) return;
      if (won) own.validUntil = now + this.o.directory.leaseMs - this.o.margin;
      else this.lose(key, 'taken_over');
    });
  }

  // ---- drain ----------------------------------------------------------------------------------

  private release(key: string, reason: 'idle' | 'drain'): Promise<unknown> {
    this.owned.delete(key);
    routingMetrics.owned.set(this.owned.size);
    routingMetrics.released.inc({ reason });
    return this.o.directory.unregister(`conv/${key}`, this.o.activation).catch((err: unknown) => {
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

  /** Registrations still in flight answer their messages `cluster_unavailable` from now on. */
  close(): void {
    this.closed = true;
  }

  stats(): { owned: number; remoteCached: number } {
    return { owned: this.owned.size, remoteCached: this.remote.size };
  }
}

function count(result: ConvRouteResult): void {
  routingMetrics.convRoutes.inc({ result });
}
