/**
 * Fan-out of user messages to the user's other nodes (part of ClusterRouting,
 * src/cluster/routing.ts), and the push wake-ups decided by the same registry lookup.
 *
 * Users: user actors are node-local. A deliver or receipt for a user goes to the local user actor
 * (the router does that) and, through fanOutUser, to every other node that the session registry
 * lists for the user: all such messages of one event-loop turn (every conversation actor's
 * fan-out to its members in that turn) are batched into one `users` frame per node, after one
 * batched registry lookup of all their users (one socket write), so a conversation publishes at
 * most once per (fan-out, node), never once per member. Fan-out frames of this thread leave in
 * fan-out order.
 *
 * Push (cluster mode): the fan-out's registry lookup also decides the push wake-up of each receiving
 * user of a deliver, so that a user online on another node costs no push job (an enqueue and a job
 * run that would only find the user online): no live device on any node -> `wake.notify` (the user
 * actor here has none either); a live device somewhere -> no push from here: a user actor that holds
 * the device (here or on its node) asks for one itself when every push finds its socket gone. A
 * failed lookup asks for the push (the job checks the registry again when it runs). The rule of
 * docs/PUSH.md is unchanged: a user is pushed only when none of its devices has a live session.
 */
import type { UserMsg } from '../actors/messages.js';
import { encodeThreadFrame, type UserBatchItem } from '../actors/thread-frames.js';
import type { Bus } from './bus/bus.js';
import { routingMetrics } from './routing-metrics.js';
import { pushMetrics } from '../jobs/push/metrics.js';
import type { SessionConn, SessionRegistry } from './sessions/sessions.js';
import { endpointOf, parseRegistryConn } from './thread-sessions.js';

export interface UserFanOutOptions {
  nodeId: string;
  /** The frames bus (purpose `frames`). */
  bus: Bus;
  sessions: SessionRegistry;
  /** Embedded mode: no other node exists, so fan-outs are dropped without a registry lookup. */
  singleNode?: boolean;
  /** Push wake-ups decided by the fan-out (cluster mode only; see "Push" above). */
  wake?: { notify(userId: string, conversationId: string, seq: number): unknown };
}

type Batch = Map<unknown, { msg: UserMsg; users: Set<string> }>;
type Found = ReadonlyArray<readonly [string, ReadonlyArray<SessionConn> | null]>;

export class UserFanOut {
  private fanBatch: Batch | null = null;
  private fanChain: Promise<void> = Promise.resolve();
  /** The last flush's publishes (later ones are issued after it on the same connection). */
  private fanPublished: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: UserFanOutOptions) {}

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
  private lookUp(users: string[]): Promise<Found> {
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
  private wakeOffline(batch: Batch, found: Found): void {
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

  private async publishFanOut(batch: Batch, found: Found): Promise<void> {
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

  /** Flushes not started yet are dropped; resolves once the publishes already issued are answered. */
  async close(): Promise<void> {
    this.closed = true;
    await this.fanChain.catch(() => undefined);
    await this.fanPublished.catch(() => undefined);
  }
}
