/**
 * Presence and typing for the sessions of one shard thread, over the Presence contract
 * (src/cluster/presence): the client frames `presence.sub`, `presence.unsub` and `typing`, and the
 * `presence` / `typing` events pushed to the connections that watch.
 *
 * - Online state: the first session of a user on this thread marks the user online (a lease of
 *   cluster.presenceTtlMs, renewed every third of it while a session lives); when the last one
 *   closes, the user goes offline unless the session registry still lists a device of the user
 *   elsewhere (another shard or node). Last seen is server time (Presence's contract).
 * - Subscribe-on-open: a connection watches the users and conversations whose chats are open, at
 *   most cluster.presenceCap targets in all; more is refused with too_many_watches and nothing of
 *   that request is added. Watching a conversation (for typing) requires membership; watching a
 *   user's presence does not (the product has no contact lists; an operator who needs privacy rules
 *   puts them here).
 * - Typing: a member's `typing` goes to the connections watching the conversation, the sending
 *   device excepted. Never stored. A non-member gets not_member.
 * - Broadcast channels: only owners and admins may watch a channel's typing or type in it; a
 *   subscriber (role member) gets `forbidden`. So a channel's subscribers, however many, never
 *   receive or cause presence traffic: typing fans out to a handful of admins at most, and joining
 *   or reading a channel touches no presence state (docs/CLUSTER.md "Channels").
 * Events are soft state: a lost one leaves a stale indicator until the next `presence.sub`.
 */
import type { PresenceFrames } from '../actors/shard-actors.js';
import type { ActorLog } from '../actors/log.js';
import type { SessionRef } from '../actors/session.js';
import { errorFrame, type ServerFrame } from '../protocol/client-frames.js';
import type { PresenceSubFrame, PresenceUnsubFrame, TypingFrame } from '../protocol/client-presence-frames.js';
import { parseDirectConversationId } from '../protocol/ids.js';
import type { Store } from '../store/store.js';
import type { Presence, PresenceEvent, PresenceInfo, Watcher } from './presence/presence.js';
import { routingMetrics } from './routing-metrics.js';
import type { SessionRegistry } from './sessions/sessions.js';

export interface ClusterPresenceOptions {
  nodeId: string;
  shard: number;
  presence: Presence;
  sessions: SessionRegistry;
  store: Pick<Store, 'getMember' | 'getConversation'>;
  /** Pushes a frame to a session of this thread (the router). */
  push(session: SessionRef, frame: ServerFrame): void;
  cap: number;
  onlineTtlMs: number;
  log: ActorLog;
}

/** Conversations whose membership one connection has proven, remembered for its typing frames. */
const MEMBERSHIP_CACHE = 256;
/**
 * Online renewals in flight at once: a renewal pass goes through the thread's users this many at a
 * time, instead of holding a pending call (promise, timer, message) for every online user at once.
 */
const RENEW_BATCH = 256;

interface Conn {
  ref: SessionRef;
  /** Created on the first proven membership: most connections never send typing. */
  members: Set<string> | null;
}

export class ClusterPresence implements PresenceFrames {
  readonly endpoint: string;
  /** This thread's connections by connection id (the watcher id is its decimal string). */
  private readonly conns = new Map<number, Conn>();
  private readonly online = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private renewing = false;
  private listening: { unsubscribe(): Promise<void> } | null = null;

  constructor(private readonly o: ClusterPresenceOptions) {
    this.endpoint = `${o.nodeId}.${o.shard}`;
  }

  async start(): Promise<void> {
    this.listening = await this.o.presence.listen(this.endpoint, (event, connIds) => this.onEvent(event, connIds));
    this.timer = setInterval(() => this.renew(), Math.max(1, Math.floor(this.o.onlineTtlMs / 3)));
    this.timer.unref();
  }

  opened(s: SessionRef): void {
    this.conns.set(s.connId, { ref: s, members: null });
    const n = this.online.get(s.user) ?? 0;
    this.online.set(s.user, n + 1);
    if (n === 0) this.setOnline(s.user);
  }

  closed(s: SessionRef): void {
    if (this.conns.get(s.connId)?.ref.device !== s.device) return;
    this.conns.delete(s.connId);
    this.o.presence.unwatchAll(this.watcher(s)).catch(() => undefined); // the entries expire
    const n = (this.online.get(s.user) ?? 1) - 1;
    if (n > 0) {
      this.online.set(s.user, n);
      return;
    }
    this.online.delete(s.user);
    const self = `${s.shard}:${s.connId}`;
    // Offline only when no device of the user is connected anywhere else (registry, soft state).
    this.o.sessions
      .list(s.user)
      .then((entries) => {
        if (this.online.has(s.user)) return;
        if (entries.some((e) => !(e.node === this.o.nodeId && e.connId === self))) return;
        return this.o.presence.setOffline(s.user);
      })
      .catch((err: unknown) => this.o.log.debug({ err }, 'presence offline update failed'));
  }

  frame(s: SessionRef, f: PresenceSubFrame | PresenceUnsubFrame | TypingFrame): void {
    switch (f.t) {
      case 'presence.sub':
        void this.sub(s, f);
        return;
      case 'presence.unsub': {
        const w = this.watcher(s);
        const done = Promise.all([
          f.users?.length ? this.o.presence.unwatch(w, f.users) : undefined,
          f.convs?.length ? this.o.presence.unwatchConversations(w, f.convs) : undefined,
        ]);
        done.catch(() => undefined); // a stored watch that could not be removed expires
        return;
      }
      case 'typing':
        void this.typing(s, f);
        return;
    }
  }

  private async sub(s: SessionRef, f: PresenceSubFrame): Promise<void> {
    const w = this.watcher(s);
    const users = f.users ?? [];
    const convs = f.convs ?? [];
    try {
      for (const conv of convs) {
        const access = await this.access(s, conv);
        if (access !== 'ok') {
          this.o.push(s, accessError(access, conv, f.id));
          return;
        }
      }
      if (convs.length > 0) {
        const r = await this.o.presence.watchConversations(w, convs, this.o.cap);
        if (r.result === 'over_cap') return this.overCap(s, f.id, r.watching);
      }
      let presence: PresenceInfo[] = [];
      if (users.length > 0) {
        const r = await this.o.presence.watch(w, users, this.o.cap);
        if (r.result === 'over_cap') {
          if (convs.length > 0) await this.o.presence.unwatchConversations(w, convs);
          return this.overCap(s, f.id, r.watching);
        }
        presence = r.presence;
      }
      this.o.push(s, { t: 'presence.state', id: f.id, users: presence.map((p) => ({ user: p.user, online: p.online, lastSeen: p.lastSeenMs })) });
    } catch (err) {
      this.o.log.warn({ err }, 'presence.sub failed');
      this.o.push(s, errorFrame('cluster_unavailable', 'presence is unavailable, retry', f.id));
    }
  }

  private overCap(s: SessionRef, id: number, watching: number): void {
    this.o.push(s, errorFrame('too_many_watches', `this connection watches ${watching} of at most ${this.o.cap} users and conversations`, id));
  }

  private async typing(s: SessionRef, f: TypingFrame): Promise<void> {
    try {
      const access = await this.access(s, f.conv);
      if (access !== 'ok') {
        this.o.push(s, accessError(access, f.conv));
        return;
      }
      await this.o.presence.typing(f.conv, s.user, s.device, f.state);
    } catch (err) {
      // Typing is soft state: a lost indicator is not worth an error frame per keystroke.
      this.o.log.debug({ err }, 'typing could not be sent');
    }
  }

  /** Whether the session may watch and type in `conv`: members, and in channels owners and admins. */
  private async access(s: SessionRef, conv: string): Promise<'ok' | 'not_member' | 'forbidden'> {
    const c = this.conns.get(s.connId);
    if (c?.members?.has(conv)) return 'ok';
    const pair = parseDirectConversationId(conv);
    let result: 'ok' | 'not_member' | 'forbidden';
    if (pair !== null) result = pair.includes(s.user) ? 'ok' : 'not_member';
    else {
      const member = await this.o.store.getMember(conv, s.user);
      if (member === null) result = 'not_member';
      else if (member.role !== 'member') result = 'ok';
      else result = (await this.o.store.getConversation(conv))?.kind === 'channel' ? 'forbidden' : 'ok';
    }
    if (result === 'ok' && c !== undefined && (c.members?.size ?? 0) < MEMBERSHIP_CACHE) (c.members ??= new Set()).add(conv);
    return result;
  }

  private onEvent(event: PresenceEvent, connIds: readonly string[]): void {
    for (const id of connIds) {
      const c = this.conns.get(Number(id));
      if (c === undefined) continue;
      if (event.type === 'presence') {
        this.o.push(c.ref, { t: 'presence', user: event.user, online: event.online, lastSeen: event.lastSeenMs });
      } else if (!(event.user === c.ref.user && event.device === c.ref.device)) {
        this.o.push(c.ref, { t: 'typing.event', conv: event.conv, user: event.user, device: event.device, state: event.state });
      }
    }
  }

  private setOnline(user: string): Promise<void> {
    return this.o.presence.setOnline(user, this.endpoint, this.o.onlineTtlMs).then(
      () => routingMetrics.presenceUpdates.inc({ result: 'ok' }),
      () => routingMetrics.presenceUpdates.inc({ result: 'failed' }),
    );
  }

  /** Renews every user online on this thread, RENEW_BATCH at a time; a pass still running is not doubled. */
  private renew(): void {
    if (this.renewing) return;
    this.renewing = true;
    void this.renewAll().finally(() => {
      this.renewing = false;
    });
  }

  private async renewAll(): Promise<void> {
    let batch: Promise<void>[] = [];
    for (const user of [...this.online.keys()]) {
      if (this.timer === null) return; // closed
      if (!this.online.has(user)) continue; // went offline during the pass
      batch.push(this.setOnline(user));
      if (batch.length >= RENEW_BATCH) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
  }

  private watcher(s: SessionRef): Watcher {
    return { node: this.endpoint, connId: String(s.connId) };
  }

  /** Stops renewing and listening; the presence instance is closed by its owner. */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.listening?.unsubscribe().catch(() => undefined);
    this.listening = null;
  }
}

function accessError(access: 'not_member' | 'forbidden', conv: string, id?: number): ServerFrame {
  return access === 'not_member'
    ? errorFrame('not_member', `not a member of ${conv}`, id)
    : errorFrame('forbidden', `only owners and admins watch or send typing in channel ${conv}`, id);
}
