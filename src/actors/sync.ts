/**
 * Catch-up (`sync`) and history paging (`history`). Both are stateless reads, so they run on the
 * shard that owns the socket, straight against the store: no actor mailbox sits between a
 * reconnect storm and the store, and the conversation actors keep their turns for sends. The order
 * that matters is kept by the session handler: a sync starts only after the user actor confirmed
 * the session (`attached`), so every message committed after the round read its heads is also
 * delivered live (see shard-actors.ts).
 *
 * Sync round: cursors are the frame's, else the device's stored delivered cursors; for every
 * conversation of the user with head > cursor, forward pages (`syncPageSize`, at most `limit` per
 * conversation) go out as `sync.batch` (with `expired`/`retainedFrom` when retention removed part
 * of the range: an explicit gap, never a silent one), then one `synced` with the heads the round
 * started from, the user's read cursors, the peer receipts of direct conversations in the round,
 * the unread badges (src/store/unread.ts: head minus read cursor, per conversation and in total),
 * and `more` when a conversation had more than `limit`.
 *
 * Membership (docs/PROTOCOL.md 3.7): in a group a member sees only seqs from its join floor (the seq
 * of the event that last added it): a round starts a conversation at the floor when the cursor is
 * below it (`sync.batch.from`, `synced.from`), and history pages stop there (`history.page.from`).
 * A membership ended by a remove/leave event stays in the user's departures: a device whose cursor
 * for it (the frame's or the stored one) is below that event's seq gets the entries up to and
 * including it (`synced.left`, `heads` at that seq); once its cursor is there, the conversation no
 * longer appears. A device with no cursor for it never held any of it and gets nothing.
 *
 * Offline flush: before a round takes its read slot, its backlog (head minus cursor, summed over the
 * user's conversations) goes to the flush gate (`deps.flush`, src/jobs/flush.ts). A small backlog
 * runs at once; a large one waits for a permit from the cluster-wide flush rate, and a permit that
 * does not come is answered `cluster_unavailable` (retryable), so the client retries with backoff.
 */
import {
  DEFAULT_SYNC_LIMIT,
  type HistoryFrame,
  type HistoryPageFrame,
  type MessageEntry,
  type PeerReceipts,
  type SyncBatchFrame,
  type SyncedFrame,
  type SyncFrame,
} from '../protocol/client-frames.js';
import { parseDirectConversationId } from '../protocol/ids.js';
import type { Store } from '../store/store.js';
import { joinFloor, type ConversationKind, type Departure, type StoredMessage, type UserConversation } from '../store/types.js';
import { unreadOf } from '../store/unread.js';
import { backlogOf, type FlushRequest } from '../jobs/flush.js';
import { errorCodeOf, errorFor } from './answers.js';
import { decodeSys, SYS_DEVICE } from './conversation-ops.js';
import type { ActorLog } from './log.js';
import { syncMetrics } from './metrics.js';
import type { Router } from './router.js';
import type { SessionRef } from './session.js';

export interface SyncDeps {
  store: Store;
  router: Router;
  log: ActorLog;
  syncPageSize: number;
  /** Caps the sync rounds and history reads running at once on this shard (a reconnect storm). */
  limit: ConcurrencyLimit;
  /**
   * The offline-flush gate (src/jobs/flush.ts): a round whose backlog is large waits for a
   * cluster-wide permit before it takes a read slot. Absent: every round runs at once.
   */
  flush?: { schedule(req: FlushRequest): Promise<unknown> };
}

/** At most `max` tasks at once; the rest wait in FIFO order (bounded by the sessions that ask). */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter, so a newcomer cannot overtake it.
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}

export function toEntry(m: StoredMessage, viewer: string): MessageEntry {
  const e: MessageEntry = { seq: m.seq, mid: m.messageId, from: m.senderUser, fdev: m.senderDevice, body: m.body, ts: m.sentAtMs };
  // A membership/metadata event (conversation-ops.ts): its msgpack body becomes `sys`.
  const sys = m.senderDevice === SYS_DEVICE ? decodeSys(m.body) : null;
  if (sys !== null) {
    e.sys = sys;
    e.body = new Uint8Array(0);
  } else if (m.senderUser === viewer) e.cmid = m.clientMsgId;
  if (m.media !== undefined) e.media = m.media;
  return e;
}

/** Runs one sync round for a session. Never rejects: failures become an error frame. */
export async function runSync(deps: SyncDeps, session: SessionRef, frame: SyncFrame): Promise<void> {
  try {
    // The cursors and conversations are read first, so the backlog is known before the round asks
    // the flush gate for a permit (a large one waits; a JobError becomes a retryable error frame).
    const { user, device } = session;
    const [stored, convs, departures] = await Promise.all([
      deps.store.getDelivered(user, device),
      deps.store.listUserConversations(user),
      deps.store.listDepartures(user),
    ]);
    const cursors = new Map<string, number>(stored.map((c) => [c.conversationId, c.seq]));
    for (const [conv, seq] of Object.entries(frame.cursors ?? {})) cursors.set(conv, seq);
    if (deps.flush !== undefined) {
      await deps.flush.schedule({ user, device, session: `${session.node}.${session.shard}.${session.connId}`, backlog: backlogOf(convs, cursors) });
    }
    const result = await deps.limit.run(() => syncRound(deps, session, frame, cursors, convs, departures));
    syncMetrics.requests.inc({ type: 'sync', result });
  } catch (err) {
    const code = errorCodeOf(err);
    deps.log.warn({ err }, 'sync failed');
    syncMetrics.requests.inc({ type: 'sync', result: code });
    deps.router.push(session, errorFor(code, frame.id));
  }
}

/** One conversation of a round: its visible range is `floor .. end`. */
interface Target {
  conv: string;
  kind: ConversationKind;
  /** The join floor (0: the whole log). */
  floor: number;
  /** The head, or for a departure the seq of the event that ended the membership. */
  end: number;
}

/** The round's conversations: the user's memberships, then departures this device has not passed. */
function targetsOf(
  convs: readonly UserConversation[],
  departures: readonly Departure[],
  cursors: ReadonlyMap<string, number>,
  left: Record<string, number>,
): Target[] {
  const out: Target[] = convs.map((uc) => ({ conv: uc.conversationId, kind: uc.kind, floor: joinFloor(uc.kind, uc.fromSeq), end: uc.head }));
  const current = new Set(out.map((x) => x.conv));
  for (const d of departures) {
    const cursor = cursors.get(d.conversationId);
    // A re-add between the two reads shows both: the membership wins.
    if (current.has(d.conversationId) || cursor === undefined || cursor >= d.leftSeq) continue;
    left[d.conversationId] = d.leftSeq;
    out.push({ conv: d.conversationId, kind: d.kind, floor: joinFloor(d.kind, d.fromSeq), end: d.leftSeq });
  }
  return out;
}

async function syncRound(
  deps: SyncDeps,
  session: SessionRef,
  frame: SyncFrame,
  cursors: ReadonlyMap<string, number>,
  convs: readonly UserConversation[],
  departures: readonly Departure[],
): Promise<'ok' | 'closed'> {
  const { store, router } = deps;
  const { user } = session;
  const limit = frame.limit ?? DEFAULT_SYNC_LIMIT;
  const reads = await store.getRead(user);

  const heads: Record<string, number> = {};
  const peers: Record<string, PeerReceipts> = {};
  const floors: Record<string, number> = {};
  const left: Record<string, number> = {};
  let more = false;
  for (const { conv, kind, floor, end } of targetsOf(convs, departures, cursors, left)) {
    heads[conv] = end;
    if (floor > 1) floors[conv] = floor;
    const cursor = cursors.get(conv) ?? 0;
    // Below the floor is not this user's to see: start there, and say so on the first batch.
    let after = Math.max(cursor, floor - 1);
    if (end <= after) continue;
    let budget = limit;
    let first = true;
    while (budget > 0) {
      const page = await store.readForward(conv, after, Math.min(deps.syncPageSize, budget, end - after));
      if (page.messages.length === 0 && !page.expired) break;
      // A departure's range ends at its event (retention may have moved a page past it).
      const msgs = page.messages.filter((m) => m.seq <= end);
      const batch: SyncBatchFrame = { t: 'sync.batch', id: frame.id, conv, kind, msgs: msgs.map((m) => toEntry(m, user)), head: end };
      if (first && page.expired) {
        batch.expired = true;
        batch.retainedFrom = page.retainedFrom;
      }
      if (first && cursor < floor - 1) batch.from = floor;
      first = false;
      if (!pushed(router.push(session, batch))) return 'closed';
      syncMetrics.messages.inc(batch.msgs.length);
      budget -= msgs.length;
      after = Math.min(end, msgs.at(-1)?.seq ?? page.next ?? after);
      if (page.next === null || after >= end) break;
    }
    if (after < end) more = true;
    if (kind === 'direct') {
      const p = await peerReceipts(store, conv, user);
      if (p !== null) peers[conv] = p;
    }
  }
  const readMap: Record<string, number> = {};
  for (const r of reads) readMap[r.conversationId] = r.seq;
  // Badges from the same heads and read cursors as the round (the push badge counts the same way).
  const unread = unreadOf(convs, reads);
  const synced: SyncedFrame = { t: 'synced', id: frame.id, heads, reads: readMap, more, peers, unread: unread.perConversation, unreadTotal: unread.total };
  if (Object.keys(floors).length > 0) synced.from = floors;
  if (Object.keys(left).length > 0) synced.left = left;
  return pushed(router.push(session, synced)) ? 'ok' : 'closed';
}

/**
 * What the other user of a direct conversation has received (highest delivered cursor over their
 * registered devices) and read: the receipts a sender that was offline missed. Computed for the
 * conversations a round carries messages for, where the sender's own unacknowledged sends sit.
 */
async function peerReceipts(store: Store, conv: string, user: string): Promise<PeerReceipts | null> {
  const pair = parseDirectConversationId(conv);
  if (pair === null || pair[0] === pair[1]) return null;
  const other = pair[0] === user ? pair[1] : pair[0];
  const [reads, devices] = await Promise.all([store.getRead(other), store.listDevices(other)]);
  const delivered = await Promise.all(devices.map((d) => store.getDelivered(other, d.deviceId)));
  let maxDelivered = 0;
  for (const list of delivered) for (const c of list) if (c.conversationId === conv) maxDelivered = Math.max(maxDelivered, c.seq);
  const read = reads.find((r) => r.conversationId === conv)?.seq ?? 0;
  return { user: other, delivered: Math.max(maxDelivered, read), read };
}

/** Answers a history request: only members may read, newest first from `before`. */
export async function runHistory(deps: SyncDeps, session: SessionRef, frame: HistoryFrame): Promise<void> {
  try {
    await deps.limit.run(() => historyPage(deps, session, frame));
  } catch (err) {
    const code = errorCodeOf(err);
    deps.log.warn({ err }, 'history failed');
    syncMetrics.requests.inc({ type: 'history', result: code });
    deps.router.push(session, errorFor(code, frame.id));
  }
}

/**
 * A history page never reaches below the member's join floor (Member.fromSeq, 0 outside groups):
 * a page that reaches it is cut there and ends the history (`next: null`, `from`, `expired` false);
 * `before` at or below the floor gets an empty page the same way.
 */
async function historyPage(deps: SyncDeps, session: SessionRef, frame: HistoryFrame): Promise<void> {
  const { store, router } = deps;
  const member = await store.getMember(frame.conv, session.user);
  if (member === null) {
    // Only on the refusal path: tell a missing conversation from one the user is not in.
    const code = (await store.getConversation(frame.conv)) === null ? 'not_found' : 'not_member';
    syncMetrics.requests.inc({ type: 'history', result: code });
    router.push(session, errorFor(code, frame.id));
    return;
  }
  const floor = member.fromSeq;
  const before = frame.before ?? Number.MAX_SAFE_INTEGER;
  const page: HistoryPageFrame = { t: 'history.page', id: frame.id, conv: frame.conv, msgs: [], next: null, expired: false };
  if (before > floor) {
    const read = await store.readBackward(frame.conv, before, frame.limit);
    const visible = floor <= 1 ? read.messages : read.messages.filter((m) => m.seq >= floor);
    page.msgs = visible.map((m) => toEntry(m, session.user));
    if (floor <= 1 || (visible.length === read.messages.length && (read.next === null || read.next > floor))) {
      page.next = read.next;
      page.expired = read.expired;
    }
  }
  if (floor > 1 && page.next === null && !page.expired) page.from = floor;
  syncMetrics.requests.inc({ type: 'history', result: 'ok' });
  router.push(session, page);
}

function pushed(r: string): boolean {
  return r !== 'closed' && r !== 'overflow';
}
