/**
 * The actor layer of one shard thread: host, router, conversation and user actors, cursor batching,
 * and the SessionHandler the gateway calls. The shard composition (src/shard.ts) creates one per
 * shard thread and wires `onLinkMessage` to the thread's incoming link; tests wire several in one
 * process with a MemoryShardNetwork.
 *
 * Frame dispatch: send -> the conversation actor (answers `sent` or `error` to the session);
 * dack -> the session user's actor (then the conversation actor); read -> the conversation actor;
 * sync and history -> reads on this shard (sync.ts); ping -> pong. Shape validation is the codec's
 * job; what needs state (membership, the head) is checked by the actors. Every failure answers with
 * an `error` frame (with the request id when the frame had one).
 *
 * Ordering: `opened` tells the user actor `attach`; a `sync` waits until the user actor confirmed
 * (`attached`), so the device is registered for live delivery before the round reads the heads.
 */
import type { ActorsConfig } from '../config/schema.js';
import type { ClientFrame, ServerFrame, SyncFrame } from '../protocol/client-frames.js';
import type { PresenceSubFrame, PresenceUnsubFrame, TypingFrame } from '../protocol/client-presence-frames.js';
import { CLOSE, CLOSE_REASONS } from '../protocol/codes.js';
import { directConversationId } from '../protocol/ids.js';
import { sendMediaRefs, type SendMediaRefs } from '../media/send-refs.js';
import type { Store } from '../store/store.js';
import { errorFor, rejectCode } from './answers.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import type { ChannelFanout, ChannelSessions } from './channel-fanout.js';
import { ConversationActor, createdConversationId } from './conversation-actor.js';
import { confirmRead } from './conversation-receipts.js';
import { CursorBatcher } from './cursor-batcher.js';
import { DackBatcher, dacksOf } from './dack-batcher.js';
import { ClockEpochSource, type EpochSource } from './epochs.js';
import { ActorHost, type ActorKindSpec } from './host.js';
import { silentLog, type ActorLog } from './log.js';
import { TurnScheduler } from './mailbox.js';
import type { ActorMessages, ConvMsg, UserMsg } from './messages.js';
import { convMetrics } from './metrics.js';
import { Router, type ClusterRoutes } from './router.js';
import type { ConnectionSink, SessionHandler, SessionRef } from './session.js';
import type { ShardLink } from './shard-link.js';
import { ConcurrencyLimit, runHistory, runSync, type SyncDeps } from './sync.js';
import { sameSession, UserActor, type Device, type UserDeps } from './user-actor.js';

export interface ShardActorsOptions {
  shard: number;
  shardCount: number;
  nodeId: string;
  store: Store;
  config: ActorsConfig;
  sink: ConnectionSink<ServerFrame>;
  link: ShardLink;
  /**
   * Cross-node routing (src/cluster/routing.ts, with the memory or Redis cluster parts). Absent in
   * actor-layer tests: one node, conversations on their home shard with ClockEpochSource epochs.
   */
  cluster?: ClusterRoutes;
  /** presence.sub / presence.unsub / typing (src/cluster/presence-frames.ts); absent: answered `internal`. */
  presence?: PresenceFrames;
  clock?: Clock;
  epochs?: EpochSource;
  log?: ActorLog;
  /** Unacknowledged deliveries per device before it is disconnected to resync (default 1024). */
  maxPendingPerDevice?: number;
  /** Sync rounds and history reads running at once on this shard; more wait (default 64). */
  maxConcurrentReads?: number;
  /** Push for users with no device online (UserDeps.wake); absent: no push. */
  wake?: UserDeps['wake'];
  /** The offline-flush gate for sync rounds (SyncDeps.flush); absent: no pacing. */
  flush?: SyncDeps['flush'];
  /**
   * Media references of sends (src/media/send-refs.ts, ConversationDeps.media): the shard composition
   * passes one built on the node's MediaIndex (or on null when media is disabled, so that sends with
   * media ids are refused). Absent (actor-layer tests): sends with media ids are refused the same way.
   */
  media?: SendMediaRefs;
  /** groups.maxMembers (ConversationDeps.maxMembers); default 1024. */
  maxGroupMembers?: number;
  /** groups.fanoutWindowMs (ConversationDeps.fanoutWindowMs); absent or 0: no window. */
  groupFanoutWindowMs?: number;
  /** Live delivery of channel posts (ConversationDeps.channels); absent: per-member delivery. */
  channelFanout?: ChannelFanout;
  /**
   * Channel topics of this shard's sockets (src/cluster/channel-delivery.ts): a session's first sync
   * waits until its socket follows the user's channels, so nothing falls between sync and live.
   */
  channelSessions?: ChannelSessions;
  /**
   * Cluster mode: a send still unanswered after this long (its conversation's owner node died with
   * it, or the frame was lost between nodes) is answered `cluster_unavailable`, so the client
   * retries under the same cmid (idempotent). Checked every half of it. Default: off.
   */
  sendAnswerTimeoutMs?: number;
  /**
   * A session whose user actor has not confirmed it within this time is closed with 4004 so it
   * reconnects (the link is at-most-once: a lost attach would leave it without live delivery).
   * Default 10 s.
   */
  attachTimeoutMs?: number;
}

export interface ShardActorStats {
  shard: number;
  draining: boolean;
  sessions: number;
  actors: { conv: number; user: number };
  mailboxDepth: number;
  cursorWritesQueued: number;
}

/** Presence and typing for this shard's sessions; implemented in the cluster layer. */
export interface PresenceFrames {
  opened(session: SessionRef): void;
  closed(session: SessionRef): void;
  /** Answers (presence.state, errors) go to the session through the router. */
  frame(session: SessionRef, frame: PresenceSubFrame | PresenceUnsubFrame | TypingFrame): void;
}

export interface ShardActors {
  /** The shard's router (the cluster layer delivers bus frames to `router.receive`). */
  router: Router;
  handler: SessionHandler<ClientFrame>;
  /** Bytes that arrived on this shard's link from another shard. */
  onLinkMessage(bytes: Uint8Array): void;
  /** Same as handler.drain(): refuse new sends, finish commits, flush cursors, end every actor. */
  drain(): Promise<void>;
  /**
   * Another shard thread of this node restarted: the user actors it hosted are gone with their
   * session registrations and pending deliveries. Closes this shard's sessions of those users with
   * 4005, so they reconnect and sync (nothing committed meanwhile is missed), and the sessions with a
   * send still unanswered by a conversation actor of that shard (lost with it: the client resends).
   * The supervisor calls this on every surviving shard.
   */
  shardRestarted(shard: number): void;
  stats(): ShardActorStats;
}

/** A session on this shard. One per connection: the in-flight bookkeeping exists only while used. */
interface LocalSession {
  ref: SessionRef;
  attached: boolean;
  /**
   * Confirmations still awaited before `attached`: the user actor's, and in a cluster the session
   * registry's (so other nodes' fan-outs find the device before its first sync reads the heads).
   */
  gates: number;
  syncing: boolean;
  waitingSync: SyncFrame | null;
  attachTimer: TimerHandle | null;
  /**
   * Unanswered sends: request id -> shard of the conversation actor it went to. The link is
   * at-most-once, so a send that went to a shard which then died may never be answered; see
   * shardRestarted. Bounded by the client's in-flight requests. Null while empty.
   */
  sends: Map<number, number> | null;
  /**
   * Unconfirmed reads per shard of the conversation actor they went to (see confirmRead), for the
   * same reason. Null until the session sends a read to another shard.
   */
  reads: number[] | null;
}

/** The conversation actor's message for a group/channel request frame. */
function convRequest(s: SessionRef, f: Exclude<Extract<ClientFrame, { id: number }>, { t: 'send' | 'sync' | 'history' | 'ping' | 'presence.sub' }>): ConvMsg {
  const session = s;
  const id = f.id;
  switch (f.t) {
    case 'conv.create':
      return { t: 'op', session, id, op: { op: 'create', cmid: f.cmid, kind: f.kind, members: f.members ?? [], ...(f.name === undefined ? {} : { name: f.name }), ...(f.avatar === undefined ? {} : { avatar: f.avatar }) } };
    case 'member.add':
      return { t: 'op', session, id, op: { op: 'add', users: f.users, role: f.role ?? 'member' } };
    case 'member.remove':
      return { t: 'op', session, id, op: { op: 'remove', user: f.user } };
    case 'member.role':
      return { t: 'op', session, id, op: { op: 'role', user: f.user, role: f.role } };
    case 'conv.leave':
      return { t: 'op', session, id, op: { op: 'leave' } };
    case 'conv.join':
      return { t: 'op', session, id, op: { op: 'join' } };
    case 'conv.meta':
      return { t: 'op', session, id, op: { op: 'meta', ...(f.name === undefined ? {} : { name: f.name }), ...(f.avatar === undefined ? {} : { avatar: f.avatar }) } };
    case 'members':
      return { t: 'members', session, id, limit: f.limit, ...(f.after === undefined ? {} : { after: f.after }) };
    case 'receipts':
      return { t: 'receipts', session, id, seq: f.seq };
  }
}

export function createShardActors(o: ShardActorsOptions): ShardActors {
  const clock = o.clock ?? systemClock;
  const log = o.log ?? silentLog;
  const epochs = o.epochs ?? new ClockEpochSource(() => clock.now());
  const cfg = o.config;
  const { store } = o;
  const sessions = new Map<number, LocalSession>();
  // Every frame to a local session passes here (from this shard or from another over the link), so
  // a send's answer (`sent`, or `error` with its id) clears it from the session's unanswered sends.
  // A `receipt` of the session's own read on its own device is the conversation actor's confirmation
  // of that read (confirmRead): it clears the read and is not sent to the client.
  const sink: ConnectionSink<ServerFrame> = {
    push(conn, frame) {
      if ((frame.t === 'sent' || frame.t === 'error' || frame.t === 'conv.ok' || frame.t === 'members.page' || frame.t === 'receipts.state') && frame.id !== undefined) {
        const local = sessions.get(conn.connId);
        if (local?.sends && sameSession(local.ref, conn)) {
          local.sends.delete(frame.id);
          if (local.sends.size === 0) local.sends = null;
        }
      } else if (frame.t === 'receipt' && frame.kind === 'read' && frame.device === conn.device && frame.user === conn.user) {
        const local = sessions.get(conn.connId);
        if (local === undefined || !sameSession(local.ref, conn)) return 'closed';
        const shard = router.shardOf(frame.conv);
        if (local.reads !== null && local.reads[shard]! > 0) local.reads[shard]!--;
        return 'sent';
      }
      return o.sink.push(conn, frame);
    },
    close: (conn, code, reason) => o.sink.close(conn, code, reason),
  };
  const router = new Router({ shard: o.shard, shardCount: o.shardCount, nodeId: o.nodeId, link: o.link, sink, log });
  if (o.cluster !== undefined) router.useCluster(o.cluster);
  // Every turn of the shard's actors runs inside the gateway's write batch (see TurnScheduler).
  const turns = new TurnScheduler(
    (run) => (o.sink.batch === undefined ? run() : o.sink.batch(run)),
    (err) => log.error({ err }, 'an actor turn failed'),
  );
  const host = new ActorHost<ActorMessages>({
    mailboxCapacity: cfg.mailboxCapacity,
    turnBudget: cfg.turnBudget,
    idlePassivateMs: cfg.idlePassivateMs,
    clock,
    log,
    schedule: turns.schedule,
  });
  const media = o.media ?? sendMediaRefs(null);
  const cursors = new CursorBatcher({ store, clock, log, flushMs: cfg.cursorFlushMs });
  const syncDeps: SyncDeps = {
    store,
    router,
    log,
    syncPageSize: cfg.syncPageSize,
    limit: new ConcurrencyLimit(o.maxConcurrentReads ?? 64),
    ...(o.flush === undefined ? {} : { flush: o.flush }),
  };
  const attachTimeoutMs = o.attachTimeoutMs ?? 10_000;
  // Sends seen unanswered at the previous sweep, per session: still unanswered now = timed out.
  const seenUnanswered = new WeakMap<LocalSession, number[]>();
  const sweepSends = (): void => {
    for (const local of sessions.values()) {
      const prev = seenUnanswered.get(local);
      if (prev !== undefined) {
        for (const id of prev) if (local.sends?.has(id)) router.push(local.ref, errorFor('cluster_unavailable', id, 'the conversation did not answer in time'));
      }
      if (local.sends) seenUnanswered.set(local, [...local.sends.keys()]);
      else seenUnanswered.delete(local);
    }
    if (draining === null) clock.setTimer(o.sendAnswerTimeoutMs! / 2, sweepSends);
  };
  if (o.sendAnswerTimeoutMs !== undefined) clock.setTimer(o.sendAnswerTimeoutMs / 2, sweepSends);
  let draining: Promise<void> | null = null;

  const convSpec: ActorKindSpec<ConvMsg> = {
    create: (ctx) => new ConversationActor(ctx, { store, router, cursors, epochs, clock, log, maxCommitBatch: cfg.maxCommitBatch, maxQueuedSends: cfg.mailboxCapacity, media, ...(o.maxGroupMembers === undefined ? {} : { maxMembers: o.maxGroupMembers }), ...(o.groupFanoutWindowMs === undefined ? {} : { fanoutWindowMs: o.groupFanoutWindowMs }), ...(o.channelFanout === undefined ? {} : { channels: o.channelFanout }) }),
    lane: (m) => (m.t === 'committed' || m.t === 'commit_failed' || m.t === 'fanout' ? 'system' : 'user'),
    reject: (_key, m, reason, cause) => {
      // A draining node's `shutting_down` tells a client to wait for its reconnect; a sender on
      // another node is not being disconnected, so it gets the retry-now code instead.
      const remote = 'session' in m && m.session.node !== o.nodeId;
      const code = remote && reason === 'shutting_down' ? 'cluster_unavailable' : rejectCode(reason, cause);
      switch (m.t) {
        case 'send':
          convMetrics.sent.inc({ result: code });
          router.push(m.session, errorFor(code, m.id));
          return;
        case 'read':
          router.push(m.session, errorFor(code));
          confirmRead(router, m.session, _key, 0);
          return;
        case 'delivered':
          for (const d of dacksOf(m)) router.push(d.session, errorFor(code));
          return;
        case 'op':
        case 'members':
        case 'receipts':
          router.push(m.session, errorFor(code, m.id));
          return;
        case 'committed':
        case 'commit_failed':
        case 'fanout':
          log.error({ reason, t: m.t }, 'an internal message was rejected by its own actor');
          return;
      }
    },
  };

  // One deps object for every user actor of the shard (there is one actor per connected user).
  // Dacks forwarded to conversation actors, one message per conversation per event-loop turn.
  const dacks = new DackBatcher((conv, msg) => router.tell('conv', conv, msg));
  const userDeps = {
    router,
    clock,
    log,
    dacks,
    deliveryRetryMs: cfg.deliveryRetryMs,
    deliveryMaxRetries: cfg.deliveryMaxRetries,
    maxPendingPerDevice: o.maxPendingPerDevice ?? 1024,
    ...(o.wake === undefined ? {} : { wake: o.wake }),
  };
  const userSpec: ActorKindSpec<UserMsg> = {
    create: (ctx, dormant) => new UserActor(ctx, userDeps, dormant as Device[] | undefined),
    // Idle with nothing pending: keep the device records only (one per connected device).
    dormant: (actor) => (actor as UserActor).dormantState(),
    lane: (m) => (m.t === 'attach' || m.t === 'detach' || m.t === 'retry' || m.t === 'overflow' ? 'system' : 'user'),
    reject: (key, m, reason, cause) => {
      switch (m.t) {
        case 'deliver':
          // Live delivery to this user can no longer be trusted: disconnect its devices so they
          // resync. When shutting down they are being closed anyway.
          if (reason === 'mailbox_full') host.tell('user', key, { t: 'overflow' });
          return;
        case 'dack':
          router.push(m.session, errorFor(rejectCode(reason, cause)));
          return;
        case 'attach':
          router.close(m.session, CLOSE.draining, CLOSE_REASONS[CLOSE.draining]);
          return;
        case 'receipt': // soft state: the next sync carries it (counted in ticks_actor_rejected_total)
        case 'detach':
        case 'retry':
        case 'overflow':
          return;
      }
    },
  };

  host.define('conv', convSpec);
  host.define('user', userSpec);
  router.bind(host, (conn) => {
    const local = sessions.get(conn.connId);
    if (local === undefined || !sameSession(local.ref, conn)) return;
    passGate(local);
  });

  function passGate(local: LocalSession): void {
    if (sessions.get(local.ref.connId) !== local || local.attached || --local.gates > 0) return;
    local.attached = true;
    if (local.attachTimer !== null) clock.clearTimer(local.attachTimer);
    local.attachTimer = null;
    if (local.waitingSync !== null) {
      const f = local.waitingSync;
      local.waitingSync = null;
      startSync(local, f);
    }
  }

  function startSync(local: LocalSession, f: SyncFrame): void {
    local.syncing = true;
    void runSync(syncDeps, local.ref, f).finally(() => {
      local.syncing = false;
    });
  }

  function onFrame(s: SessionRef, f: ClientFrame): void {
    switch (f.t) {
      case 'send': {
        if (draining !== null) {
          convMetrics.sent.inc({ result: 'shutting_down' });
          router.push(s, errorFor('shutting_down', f.id));
          return;
        }
        const conv = f.to !== undefined ? directConversationId(s.user, f.to) : f.conv;
        const local = sessions.get(s.connId);
        if (local !== undefined && sameSession(local.ref, s)) (local.sends ??= new Map()).set(f.id, router.shardOf(conv));
        router.tell('conv', conv, f.media !== undefined && f.media.length > 0 ? { t: 'send', session: s, id: f.id, cmid: f.cmid, body: f.body, media: f.media } : { t: 'send', session: s, id: f.id, cmid: f.cmid, body: f.body });
        return;
      }
      case 'dack':
        // A followed channel: the cursor is written from here (cursors are monotonic, so order
        // does not matter). Membership is the socket's subscription; there is no head check, so a
        // device that dacks beyond the head only makes its own next sync skip those seqs. The user
        // actor still gets it to clear pending deliveries (a poster's own other devices).
        if (f.seq > 0 && o.channelSessions?.follows(s, f.conv) === true) {
          cursors.add({ userId: s.user, deviceId: s.device, conversationId: f.conv, seq: f.seq });
          router.tell('user', s.user, { t: 'dack', session: s, conv: f.conv, seq: f.seq, stored: true });
          return;
        }
        router.tell('user', s.user, { t: 'dack', session: s, conv: f.conv, seq: f.seq });
        return;
      case 'read': {
        const local = sessions.get(s.connId);
        const shard = router.shardOf(f.conv);
        if (local !== undefined && sameSession(local.ref, s) && shard !== o.shard) (local.reads ??= new Array<number>(o.shardCount).fill(0))[shard]!++;
        router.tell('conv', f.conv, { t: 'read', session: s, seq: f.seq });
        return;
      }
      case 'sync': {
        const local = sessions.get(s.connId);
        if (local === undefined) {
          router.push(s, errorFor('internal', f.id, 'session is not open'));
          return;
        }
        if (local.syncing || local.waitingSync !== null) {
          router.push(s, errorFor('too_many_inflight', f.id, 'a sync is already running'));
          return;
        }
        if (local.attached) startSync(local, f);
        else local.waitingSync = f;
        return;
      }
      case 'history':
        void runHistory(syncDeps, s, f);
        return;
      case 'ping':
        router.push(s, { t: 'pong', id: f.id });
        return;
      case 'conv.create':
      case 'member.add':
      case 'member.remove':
      case 'member.role':
      case 'conv.leave':
      case 'conv.join':
      case 'conv.meta':
      case 'members':
      case 'receipts': {
        // Answered by conv.ok / members.page / receipts.state or error: counted as unanswered like a
        // send, so a crash of the conversation's shard closes the session (shardRestarted).
        const conv = f.t === 'conv.create' ? createdConversationId(s.user, f.kind, f.cmid) : f.conv;
        if (draining !== null && f.t !== 'members' && f.t !== 'receipts') {
          router.push(s, errorFor('shutting_down', f.id));
          return;
        }
        const local = sessions.get(s.connId);
        if (local !== undefined && sameSession(local.ref, s)) (local.sends ??= new Map()).set(f.id, router.shardOf(conv));
        router.tell('conv', conv, convRequest(s, f));
        return;
      }
      case 'presence.sub':
      case 'presence.unsub':
      case 'typing':
        if (o.presence !== undefined) o.presence.frame(s, f);
        else if (f.t === 'presence.sub') router.push(s, errorFor('internal', f.id, 'presence is not available'));
        return;
      default: {
        const never: never = f;
        throw new Error(`unhandled client frame ${JSON.stringify(never)}`);
      }
    }
  }

  async function drain(): Promise<void> {
    draining ??= (async () => {
      // Dacks waiting for the end of the turn reach their conversations before those end.
      dacks.flush();
      await host.drain();
      await cursors.flush();
    })();
    return draining;
  }

  const handler: SessionHandler<ClientFrame> = {
    opened(s) {
      const local: LocalSession = { ref: s, attached: false, gates: (o.cluster === undefined ? 1 : 2) + (o.channelSessions === undefined ? 0 : 1), syncing: false, waitingSync: null, attachTimer: null, sends: null, reads: null };
      sessions.set(s.connId, local);
      local.attachTimer = clock.setTimer(attachTimeoutMs, () => {
        local.attachTimer = null;
        if (sessions.get(s.connId) !== local || local.attached) return;
        log.warn({ shard: router.shardOf(s.user) }, 'session not attached in time; closing it to reconnect');
        router.close(s, CLOSE.internalError, CLOSE_REASONS[CLOSE.internalError]);
      });
      router.tell('user', s.user, { t: 'attach', session: s });
      if (o.cluster !== undefined) void o.cluster.sessionOpened(s).then(() => passGate(local));
      o.presence?.opened(s);
      if (o.channelSessions !== undefined) void o.channelSessions.opened(s).then(() => passGate(local));
      // Register the device (upsert, keeps its push token) so receipts can count the user's devices.
      // Best effort: failing it loses nothing but a device from the peers' delivered state.
      store.putDevice({ userId: s.user, deviceId: s.device, platform: 'other', createdAtMs: clock.now() }).catch((err: unknown) => {
        log.warn({ err }, 'device registration failed');
      });
    },
    frame(s, f) {
      try {
        onFrame(s, f);
      } catch (err) {
        log.error({ err, t: f.t }, 'client frame handling failed');
        if ('id' in f) router.push(s, errorFor('internal', f.id));
        else router.push(s, errorFor('internal'));
      }
    },
    closed(s) {
      const local = sessions.get(s.connId);
      if (local !== undefined && sameSession(local.ref, s)) {
        if (local.attachTimer !== null) clock.clearTimer(local.attachTimer);
        sessions.delete(s.connId);
      }
      router.tell('user', s.user, { t: 'detach', session: s });
      o.cluster?.sessionClosed(s);
      o.presence?.closed(s);
      o.channelSessions?.closed(s);
    },
    drain,
  };

  return {
    router,
    handler,
    onLinkMessage: (bytes) => router.receive(bytes),
    drain,
    shardRestarted(shard) {
      for (const local of [...sessions.values()]) {
        // A send still unanswered by the dead incarnation was lost with it (or its answer was): the
        // client would wait for `sent` forever on a connection that looks healthy. Closing makes it
        // resend under the same cmid after reconnecting (idempotent: a stored one comes back dup).
        // The same for a read not yet confirmed by that shard: the client sends its reads again.
        const lostSend = local.sends !== null && [...local.sends.values()].includes(shard);
        const lostRead = local.reads !== null && local.reads[shard]! > 0;
        if (router.shardOf(local.ref.user) === shard || lostSend || lostRead) router.close(local.ref, CLOSE.shardRestarting, CLOSE_REASONS[CLOSE.shardRestarting]);
      }
    },
    stats: () => ({
      shard: o.shard,
      draining: draining !== null,
      sessions: sessions.size,
      actors: { conv: host.count('conv'), user: host.count('user') },
      mailboxDepth: host.mailboxDepth(),
      cursorWritesQueued: cursors.size,
    }),
  };
}
