/**
 * Live delivery of broadcast-channel posts for one shard thread: fan-out on read
 * (src/actors/channel-fanout.ts, docs/CLUSTER.md "Channels").
 *
 * Publish (on the thread of the channel's conversation actor, after a commit):
 * - this thread: one `msg` frame per post, encoded once and published to the uWS topic `ch:<conv>`,
 *   which writes it to every subscribed socket of the thread but the sending device's (it has its
 *   `sent`; the sender's other devices also get the post with its cmid from the sender's user actor,
 *   so they may see it twice and dedupe by `mid`);
 * - the other shards of this node: one `channel` thread frame each over the ShardLink;
 * - other nodes: the channel-interest registry lists the endpoints with subscribers; the post goes
 *   out as ONE bus publish per node (to one of its listed endpoints, `fwd` set), and that thread
 *   hands it to the other shards of its node. A node with no subscriber of the channel gets nothing.
 *   Lookups start at once; the publishes of one thread are issued in post order (one Redis
 *   connection keeps them in order), as the user fan-out of src/cluster/user-fanout.ts does.
 * Nothing is kept per subscriber and nothing is retried: delivery is at-most-once, and a subscriber
 * that missed a post (offline, lost frame, slow socket) catches up by cursor with `sync`.
 *
 * Writes: uWS queues the topic publishes of one event-loop turn and writes them to each subscriber
 * as one corked write (checked with strace: 5 publishes per turn cost the same sendto calls as 1),
 * so posts of one commit batch or of bus frames read together already cost one write per
 * subscriber. With `publishWindowMs` > 0 this thread holds its posts for up to that long and
 * publishes them in one turn: one write per subscriber per window whatever the post rate, for
 * that much added latency (the kernel's per-write cost, on the node and on every reader, is most
 * of a channel delivery's cost). Order is kept: posts leave in arrival order.
 *
 * Subscriptions (on the thread that holds the socket):
 * - a session that opens subscribes to the topics of the user's channels (listUserConversations,
 *   kind `channel`); `opened` resolves once the subscriptions and this thread's registry entries are
 *   in place, and the session handler holds the session's first sync until then. When the store
 *   cannot be read (3 attempts) the session is closed with 4004 to reconnect, rather than left
 *   without live channel posts for its whole life;
 * - a join or leave (`membership`, called by the conversation actor) reaches the session that asked
 *   and every live session of the user that the session registry lists (looked up twice, the second
 *   time one heartbeat later for registrations in flight), as a `chsub` frame to the thread that
 *   holds the socket;
 * - the first subscriber socket of a channel on this thread adds the thread's endpoint to the
 *   registry, the last one to go removes it; the heartbeat (cluster.heartbeatMs, like the session
 *   registry's) refreshes every entry of the thread with one pipelined call, so entries of a thread
 *   that died expire after cluster.sessionTtlMs.
 * Embedded mode (one node, memory parts): there is no other node, so the registry is not used and
 * each post goes to every shard of the node (a topic without subscribers costs a hash lookup).
 *
 * Presence: nothing here touches presence; a subscriber count has no effect on presence traffic.
 */
import type { ChannelFanout, ChannelSessions, ChannelTopics } from '../actors/channel-fanout.js';
import { channelTopic } from '../actors/channel-fanout.js';
import type { ActorLog } from '../actors/log.js';
import type { DeliveredEntry } from '../actors/messages.js';
import type { Router } from '../actors/router.js';
import type { SessionRef } from '../actors/session.js';
import { encodeThreadFrame, type ChannelThreadFrame, type ThreadFrame } from '../actors/thread-frames.js';
import type { MessageEntry, MsgFrame } from '../protocol/client-frames.js';
import { CLOSE, CLOSE_REASONS } from '../protocol/codes.js';
import { encodeServerFrame } from '../protocol/codec.js';
import type { Store } from '../store/store.js';
import type { Bus } from './bus/bus.js';
import type { ChannelInterest } from './channels/interest.js';
import { channelMetrics, type PublishResult } from './channels/metrics.js';
import { endpointOf } from './thread-sessions.js';
import type { SessionRegistry } from './sessions/sessions.js';

export interface ClusterChannelsOptions {
  nodeId: string;
  shard: number;
  /** The frames bus (purpose `frames`): the same channels as src/cluster/routing.ts. */
  bus: Bus;
  interest: ChannelInterest;
  sessions: SessionRegistry;
  store: Pick<Store, 'listUserConversations'>;
  topics: ChannelTopics;
  heartbeatMs: number;
  /** Lifetime of a registry entry without a refresh (cluster.sessionTtlMs). */
  ttlMs: number;
  /** Embedded mode: no other node; the registry is not used. */
  singleNode?: boolean;
  /** Hold topic publishes this long to write several posts per socket at once (groups.channelPublishWindowMs; 0: per event-loop turn). */
  publishWindowMs?: number;
  log: ActorLog;
}

/** What the channel side needs of the shard's router (src/actors/router.ts). */
export type ChannelRouter = Pick<Router, 'useChannels' | 'postToShard' | 'shardCount' | 'close'>;

/** Reads of a new session's channels before it is closed to reconnect (the store was unavailable). */
const OPEN_ATTEMPTS = 3;
const OPEN_RETRY_MS = 200;

interface ConnChannels {
  ref: SessionRef;
  convs: Set<string>;
}

type Cause = 'open' | 'membership' | 'close';

export class ClusterChannels implements ChannelFanout, ChannelSessions {
  readonly endpoint: string;
  private router: ChannelRouter | null = null;
  /** This thread's sockets that follow channels, by connection id. */
  private readonly byConn = new Map<number, ConnChannels>();
  /** The same sockets by `user \0 device`: a post's sending device is skipped by its topic. */
  private readonly byDevice = new Map<string, SessionRef>();
  /** Subscribed sockets per channel on this thread; a channel is in the registry while > 0. */
  private readonly counts = new Map<string, number>();
  /**
   * Sessions whose channels are being read at open, with the channels they left meanwhile: the
   * read may predate the leave, and must not subscribe the socket again.
   */
  private readonly opening = new Map<number, Set<string>>();
  /** Registry adds in flight, so a second socket's `opened` waits for the same add. */
  private readonly adding = new Map<string, Promise<void>>();
  private chain: Promise<void> = Promise.resolve();
  private issued: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** Topic publishes held for the publish window (arrival order), and its timer. */
  private held: { topic: string; bytes: Uint8Array; except: SessionRef | undefined }[] = [];
  private windowTimer: NodeJS.Timeout | null = null;
  private beating = false;
  private stopped = false;

  constructor(private readonly o: ClusterChannelsOptions) {
    this.endpoint = endpointOf(o.nodeId, o.shard);
  }

  /** Takes the router's channel frames and starts the registry heartbeat. */
  start(router: ChannelRouter): void {
    this.router = router;
    router.useChannels((frame) => this.receive(frame));
    if (this.o.singleNode !== true) {
      this.timer = setInterval(() => void this.heartbeat(), this.o.heartbeatMs);
      this.timer.unref();
    }
  }

  // ---- publish -------------------------------------------------------------------------------

  publish(conv: string, msgs: DeliveredEntry[]): void {
    if (msgs.length === 0 || this.stopped) return;
    // The cmid is the sender's business: its own devices get it through its user actor.
    const entries = msgs.map(({ cmid: _cmid, ...e }): MessageEntry => e);
    this.toTopic(conv, entries);
    const router = this.r();
    for (let s = 0; s < router.shardCount; s++) {
      if (s === this.o.shard) continue;
      router.postToShard(s, { v: 1, t: 'channel', conv, msgs: entries });
      channelMetrics.publishes.inc({ scope: 'shard', result: 'sent' });
    }
    if (this.o.singleNode === true) return;
    const lookup = this.o.interest.list(conv).catch((err: unknown) => {
      channelMetrics.interestErrors.inc({ op: 'list' });
      this.o.log.warn({ err }, 'channel interest lookup failed; other nodes miss this post live (their subscribers sync)');
      return [] as string[];
    });
    // Issue order = post order; the publishes' answers are not waited for (see user-fanout.ts).
    this.chain = Promise.all([this.chain, lookup]).then(
      ([, endpoints]) => {
        this.issued = this.toNodes(conv, entries, endpoints);
      },
      () => undefined,
    );
  }

  /** One bus publish per other node listed for `conv`; another endpoint of the node if the first has no receiver. */
  private toNodes(conv: string, msgs: MessageEntry[], endpoints: readonly string[]): Promise<unknown> {
    const byNode = new Map<string, string[]>();
    for (const ep of endpoints) {
      const node = nodeOfEndpoint(ep);
      if (node === null || node === this.o.nodeId) continue;
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [ep]);
      else list.push(ep);
    }
    if (byNode.size === 0) return Promise.resolve();
    const bytes = encodeThreadFrame({ v: 1, t: 'channel', conv, msgs, fwd: true });
    const tryEach = async (eps: string[]): Promise<void> => {
      let result: PublishResult = 'no_receiver';
      for (const ep of eps) {
        try {
          if ((await this.o.bus.publish(ep, bytes)) > 0) {
            result = 'sent';
            break;
          }
        } catch (err) {
          result = 'failed';
          this.o.log.debug({ err }, 'a channel publish to another node was lost');
          break;
        }
      }
      channelMetrics.publishes.inc({ scope: 'node', result });
    };
    return Promise.all([...byNode.values()].map(tryEach));
  }

  /** The posts to this thread's subscribers: one encode and one uWS publish per message. */
  private toTopic(conv: string, msgs: readonly MessageEntry[]): void {
    const topic = channelTopic(conv);
    if (this.o.topics.subscribers(topic) === 0) return;
    const windowMs = this.o.publishWindowMs ?? 0;
    for (const e of msgs) {
      // Same key order as the user actor's msg frames (`t` first): some clients peek at it.
      const frame: MsgFrame = { t: 'msg', conv, kind: 'channel', ...e };
      const bytes = encodeServerFrame(frame);
      const except = this.byDevice.get(deviceKey(e.from, e.fdev));
      if (windowMs <= 0) this.o.topics.publish(topic, bytes, except);
      else this.held.push({ topic, bytes, except });
    }
    if (windowMs > 0 && this.windowTimer === null) this.windowTimer = setTimeout(() => this.flushWindow(), windowMs);
    channelMetrics.topicMessages.inc(msgs.length);
    channelMetrics.publishes.inc({ scope: 'topic', result: 'sent' });
  }

  /** Publishes every held post in one turn (uWS writes them to each socket as one write). */
  private flushWindow(): void {
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.windowTimer = null;
    const held = this.held;
    this.held = [];
    if (this.stopped) return;
    for (const h of held) this.o.topics.publish(h.topic, h.bytes, h.except);
  }

  // ---- frames from other threads -------------------------------------------------------------

  receive(frame: ChannelThreadFrame): void {
    if (this.stopped) return;
    switch (frame.t) {
      case 'channel': {
        this.toTopic(frame.conv, frame.msgs);
        if (frame.fwd === true) {
          const router = this.r();
          const local: ThreadFrame = { v: 1, t: 'channel', conv: frame.conv, msgs: frame.msgs };
          for (let s = 0; s < router.shardCount; s++) {
            if (s === this.o.shard) continue;
            router.postToShard(s, local);
            channelMetrics.publishes.inc({ scope: 'shard', result: 'sent' });
          }
        }
        return;
      }
      case 'chsub':
        if (frame.joined) {
          this.opening.get(frame.conn.connId)?.delete(frame.conv);
          void this.subscribe(frame.conn, frame.conv, 'membership');
        }
        else this.unsubscribe(frame.conn, frame.conv, 'membership');
        return;
      default: {
        const never: never = frame;
        throw new Error(`unhandled channel frame ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- membership ----------------------------------------------------------------------------

  membership(conv: string, user: string, joined: boolean, via?: SessionRef): void {
    if (this.stopped) return;
    if (via !== undefined && via.user === user) this.tellConn(via, conv, joined);
    // The registry lists the user's other live sessions. A session whose registration was still in
    // flight is found by a second lookup one heartbeat later (a repeated change is a no-op).
    this.lookupAndTell(conv, user, joined, via);
    if (this.o.singleNode !== true) {
      setTimeout(() => this.lookupAndTell(conv, user, joined, via), this.o.heartbeatMs).unref();
    }
  }

  private lookupAndTell(conv: string, user: string, joined: boolean, via: SessionRef | undefined): void {
    if (this.stopped) return;
    this.o.sessions.list(user).then(
      (entries) => {
        for (const e of entries) {
          const m = /^(\d+):(\d+)$/.exec(e.connId);
          if (m === null) continue;
          const conn: SessionRef = { node: e.node, shard: Number(m[1]), connId: Number(m[2]), user, device: e.device };
          if (via !== undefined && sameConn(via, conn)) continue;
          this.tellConn(conn, conv, joined);
        }
      },
      (err: unknown) => this.o.log.warn({ err }, 'session lookup for a channel join or leave failed; the sessions follow it after reconnecting'),
    );
  }

  /** A subscription change for one socket, to the thread that holds it. */
  private tellConn(conn: SessionRef, conv: string, joined: boolean): void {
    const frame: ChannelThreadFrame = { v: 1, t: 'chsub', conn, conv, joined };
    if (conn.node !== this.o.nodeId) {
      this.o.bus.publish(endpointOf(conn.node, conn.shard), encodeThreadFrame(frame)).catch((err: unknown) => {
        this.o.log.debug({ err }, 'a channel subscription change for another node was lost');
      });
    } else if (conn.shard === this.o.shard) this.receive(frame);
    else this.r().postToShard(conn.shard, frame);
  }

  // ---- sessions ------------------------------------------------------------------------------

  async opened(s: SessionRef): Promise<void> {
    const left = new Set<string>();
    this.opening.set(s.connId, left);
    try {
      await this.subscribeAtOpen(s, left);
    } finally {
      if (this.opening.get(s.connId) === left) this.opening.delete(s.connId);
    }
  }

  private async subscribeAtOpen(s: SessionRef, left: ReadonlySet<string>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let convs;
      try {
        convs = await this.o.store.listUserConversations(s.user);
      } catch (err) {
        if (attempt < OPEN_ATTEMPTS && !this.stopped) {
          await new Promise((resolve) => setTimeout(resolve, OPEN_RETRY_MS * attempt));
          continue;
        }
        // A session left without its channels would miss every live post for its whole life:
        // close it (4004) so the client reconnects and subscribes again.
        channelMetrics.openFailures.inc();
        this.o.log.warn({ err }, 'reading the channels of a new session failed; closing it to reconnect');
        this.r().close(s, CLOSE.internalError, CLOSE_REASONS[CLOSE.internalError]);
        return;
      }
      const adds: Promise<void>[] = [];
      for (const uc of convs) {
        if (uc.kind !== 'channel' || left.has(uc.conversationId)) continue;
        const p = this.subscribe(s, uc.conversationId, 'open');
        if (p !== null) adds.push(p);
      }
      await Promise.all(adds);
      return;
    }
  }

  follows(s: SessionRef, conv: string): boolean {
    const c = this.byConn.get(s.connId);
    return c !== undefined && sameConn(c.ref, s) && c.convs.has(conv);
  }

  closed(s: SessionRef): void {
    const c = this.byConn.get(s.connId);
    if (c === undefined || !sameConn(c.ref, s)) return;
    this.forget(c);
    // uWS drops a closed socket's topic subscriptions itself.
    for (const conv of c.convs) this.release(conv, 'close');
  }

  /** Subscribes one socket of this thread; resolves when the channel's registry entry is in place. */
  private subscribe(ref: SessionRef, conv: string, cause: Cause): Promise<void> | null {
    if (ref.node !== this.o.nodeId || ref.shard !== this.o.shard) return null;
    let c = this.byConn.get(ref.connId);
    if (c !== undefined && !sameConn(c.ref, ref)) return null;
    if (c?.convs.has(conv) === true) return this.adding.get(conv) ?? null;
    if (!this.o.topics.subscribe(ref, channelTopic(conv))) return null; // the socket is gone
    if (c === undefined) {
      this.byConn.set(ref.connId, (c = { ref, convs: new Set() }));
      this.byDevice.set(deviceKey(ref.user, ref.device), ref);
    }
    c.convs.add(conv);
    channelMetrics.subscriptions.inc();
    channelMetrics.subscriptionChanges.inc({ op: 'subscribe', cause });
    const n = (this.counts.get(conv) ?? 0) + 1;
    this.counts.set(conv, n);
    if (n > 1) return this.adding.get(conv) ?? null;
    channelMetrics.topics.set(this.counts.size);
    if (this.o.singleNode === true) return null;
    const add = this.o.interest.add(conv, this.endpoint, this.o.ttlMs).then(
      () => undefined,
      (err: unknown) => {
        channelMetrics.interestErrors.inc({ op: 'add' });
        this.o.log.warn({ err }, 'channel interest add failed; the heartbeat retries it');
      },
    );
    const tracked = add.finally(() => {
      if (this.adding.get(conv) === tracked) this.adding.delete(conv);
    });
    this.adding.set(conv, tracked);
    return tracked;
  }

  private unsubscribe(ref: SessionRef, conv: string, cause: Cause): void {
    this.opening.get(ref.connId)?.add(conv);
    const c = this.byConn.get(ref.connId);
    if (c === undefined || !sameConn(c.ref, ref) || !c.convs.delete(conv)) return;
    if (c.convs.size === 0) this.forget(c);
    this.o.topics.unsubscribe(ref, channelTopic(conv));
    this.release(conv, cause);
  }

  private forget(c: ConnChannels): void {
    this.byConn.delete(c.ref.connId);
    const key = deviceKey(c.ref.user, c.ref.device);
    if (this.byDevice.get(key) === c.ref) this.byDevice.delete(key);
  }

  /** One subscriber socket of `conv` on this thread is gone. */
  private release(conv: string, cause: Cause): void {
    channelMetrics.subscriptions.dec();
    channelMetrics.subscriptionChanges.inc({ op: 'unsubscribe', cause });
    const n = (this.counts.get(conv) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(conv, n);
      return;
    }
    this.counts.delete(conv);
    channelMetrics.topics.set(this.counts.size);
    if (this.o.singleNode === true || this.stopped) return;
    this.o.interest.remove(conv, this.endpoint).catch((err: unknown) => {
      channelMetrics.interestErrors.inc({ op: 'remove' });
      this.o.log.debug({ err }, 'channel interest remove failed; the entry expires');
    });
  }

  // ---- heartbeat, close ----------------------------------------------------------------------

  private async heartbeat(): Promise<void> {
    if (this.beating || this.stopped || this.counts.size === 0) return;
    this.beating = true;
    try {
      await this.o.interest.refresh([...this.counts.keys()], this.endpoint, this.o.ttlMs);
    } catch (err) {
      channelMetrics.interestErrors.inc({ op: 'refresh' });
      this.o.log.warn({ err }, 'channel interest refresh failed');
    } finally {
      this.beating = false;
    }
  }

  /** Stops the heartbeat and waits for publishes already issued. Entries left expire. Idempotent. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    // Held posts are dropped: the sockets are closed by now (at-most-once; readers sync).
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.windowTimer = null;
    this.held = [];
    await this.chain.catch(() => undefined);
    await this.issued.catch(() => undefined);
  }

  stats(): { channels: number; sockets: number } {
    return { channels: this.counts.size, sockets: this.byConn.size };
  }

  private r(): ChannelRouter {
    if (this.router === null) throw new Error('channel delivery used before start()');
    return this.router;
  }
}

/** The node of an endpoint `<node>.<shard>` (node ids may contain dots: the shard is after the last). */
export function nodeOfEndpoint(endpoint: string): string | null {
  const i = endpoint.lastIndexOf('.');
  if (i <= 0 || !/^\d+$/.test(endpoint.slice(i + 1))) return null;
  return endpoint.slice(0, i);
}

function deviceKey(user: string, device: string): string {
  return `${user}\u0000${device}`;
}

function sameConn(a: SessionRef, b: SessionRef): boolean {
  return a.connId === b.connId && a.shard === b.shard && a.node === b.node && a.user === b.user && a.device === b.device;
}
