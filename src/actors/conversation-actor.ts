/**
 * The conversation actor: the single writer of one conversation on this node.
 *
 * - Activation loads the conversation and its members and claims the writer role
 *   (`openWriter(conv, epoch)`). A conversation that does not exist yet stays absent until a send to
 *   its canonical direct id (`d:a:b`) by a or b creates it (createConversation is idempotent), or a
 *   `conv.create` addressed to its derived group/channel id creates it.
 * - Sends are group-committed: while one append is in flight new sends queue; the next append
 *   takes up to `maxCommitBatch`. `sent` goes to the sender only after the append resolved.
 *   Grouping across conversations (1:1 traffic, where each conversation has about one message in
 *   flight) is the store engine's job, not the actor's: the embedded engine puts the appends of all
 *   conversations that queue while one transaction is in flight into the next transaction
 *   (src/store/embedded/committer.ts); scylla cannot (a fenced batch is one partition).
 * - After a commit, one `deliver` per member's user actor (the sender's own user actor included:
 *   it delivers to the sender's other devices). Channels: the batch goes to `deps.channels.publish`
 *   (one publish per node with subscribers, then uWS topics) plus the sender's own user actor, never
 *   per subscriber; without `deps.channels` (actor-layer tests) every member's user actor is told.
 * - Any commit failure fails the rest of the queue with a retryable error and ends the activation;
 *   the next message activates afresh with a new epoch (a lost fence can never ack again).
 * - Receipts (dacks via the device's user actor, reads) are handled by ConversationReceipts.
 *
 * Groups and channels (conversation-ops.ts has the permission matrix and the event format):
 * - Membership and metadata operations are checked against the *projected* member set (the
 *   committed one plus what the queued operations will change), become events (messages from the
 *   reserved device `~`) and go through the same queue and group commit as sends, so events and
 *   messages interleave in seq order and every device sees the same membership at each seq. A send
 *   is accepted when its sender is a member in the projection, i.e. at the seq it will get.
 * - Fan-out at each seq goes to the members at that seq: messages before an event go to the members
 *   before it; an event goes to the members before and after it (a removed user learns it).
 * - Member rows (and the name/avatar in the conversation meta) are a view of the log. A batch with
 *   events first writes the pending marker `~pending: <applied seq>` into the conversation meta,
 *   then appends, then writes the rows, then clears the marker; only then are the batch's senders
 *   acked and its entries fanned out. A crash (or a failed row write) in between leaves the marker:
 *   the next activation replays the events after that seq onto the rows before it serves anything.
 *   A row write that fails ends this activation after the batch completes, for that repair.
 * - Join floors and departures (docs/PROTOCOL.md 3.7): a member's row carries the seq of the event
 *   that last added it (groups only; channels and direct conversations store 0), and a remove/leave
 *   event records a departure for the user in the same atomic write as the row's removal, so sync
 *   (sync.ts) can deliver a removed device the entries up to its removal. A departed member's dacks
 *   up to that seq are accepted (its cursor moves); nothing else of it is.
 * - An avatar (`conv.create`, `conv.meta`) must be an uploaded media id (checked like a send's
 *   media, refused `invalid_field` / `avatar`); it is recorded as sent in the conversation with the
 *   commit, so members can get its download URL.
 * - Channel subscribers joining or leaving (`conv.join`, a subscriber's `conv.leave`) write only
 *   their member row, never an event (subscribers must not spam readers), and tell
 *   `deps.channels.membership`. While a queued event concerns the same user the request is refused
 *   `too_many_inflight` (retry), so the row and the log never disagree.
 */
import { createHash } from 'node:crypto';
import { errorFrame } from '../protocol/client-frames.js';
import type { ConvOkFrame, MembersPageFrame, SysEvent } from '../protocol/client-conv-frames.js';
import { derivedConversationId, derivedIdInput, newMessageId, messageIdTimeMs, parseDirectConversationId } from '../protocol/ids.js';
import type { ErrorCode } from '../protocol/codes.js';
import type { Store, ConversationWriter } from '../store/store.js';
import type { AppendResult, Conversation, MessageDraft } from '../store/types.js';
import { errorCodeOf, errorFor, storeFailureCode } from './answers.js';
import type { ChannelFanout } from './channel-fanout.js';
import type { Clock, TimerHandle } from './clock.js';
import {
  applySys,
  encodeSys,
  mayPost,
  metaAfter,
  PENDING_KEY,
  planOp,
  SYS_DEVICE,
  sysChanges,
  type MemberState,
  type MemberView,
} from './conversation-ops.js';
import type { CursorBatcher } from './cursor-batcher.js';
import type { EpochSource } from './epochs.js';
import type { Actor, ActorContext } from './host.js';
import type { ActorLog } from './log.js';
import { ConversationReceipts } from './conversation-receipts.js';
import { dacksOf } from './dack-batcher.js';
import { repairRows, withoutMarker, writeBatchRows, writeRow } from './conversation-rows.js';
import type { ConvCommitFailed, ConvDelivered, ConvMembersMsg, ConvMsg, ConvOpMsg, ConvReceiptsMsg, ConvSend, DeliveredEntry, DeviceDack } from './messages.js';
import { convMetrics } from './metrics.js';
import type { Router } from './router.js';
import { sendMediaRefs, type SendMediaRefs } from '../media/send-refs.js';

/** Refuses every send with media ids (no media index). */
const NO_MEDIA = sendMediaRefs(null);

export interface ConversationDeps {
  store: Store;
  router: Router;
  cursors: CursorBatcher;
  epochs: EpochSource;
  clock: Clock;
  log: ActorLog;
  maxCommitBatch: number;
  /** Sends waiting for the next group commit; more are refused with too_many_inflight. */
  maxQueuedSends: number;
  /**
   * Media ids of sends (src/media/send-refs.ts): checked before a send is queued, references
   * recorded after its commit and before its `sent`. Absent: sends with media ids are refused.
   */
  media?: SendMediaRefs;
  /** groups.maxMembers (default 1024): a group never has more members (`group_full`). */
  maxMembers?: number;
  /** Live delivery of channel posts (src/actors/channel-fanout.ts). Absent: per-member delivery. */
  channels?: ChannelFanout;
  /**
   * groups.fanoutWindowMs: a group's deliveries go to its members at most once per window. A commit
   * after a quiet window goes out at once; commits within the window are held and go together at its
   * end (one `deliver` per member and one socket write per device for all of them). 0 or absent:
   * every commit is fanned out when it completes.
   */
  fanoutWindowMs?: number;
}

/** Recent (device, cmid) -> result kept per activation, so common retries skip the store. */
const DEDUPE_CAPACITY = 1024;
const MEMBER_PAGE = 1000;
export const DEFAULT_MAX_MEMBERS = 1024;

/** The id of the group or channel a `conv.create` by `user` with `cmid` creates (or re-finds). */
export function createdConversationId(user: string, kind: 'group' | 'channel', cmid: string): string {
  return derivedConversationId(kind, createHash('sha256').update(derivedIdInput(user, kind, cmid)).digest());
}

/** One entry of the commit queue: a send, or one event of an operation. */
interface Queued {
  draft: MessageDraft;
  send?: ConvSend;
  /** The operation this event belongs to; `answer` on its last event (answered with its seq). */
  op?: ConvOpMsg;
  answer?: boolean;
  sys?: SysEvent;
}

interface Loaded {
  conv: Conversation;
  /** Committed members (mutated in place by commits; ConversationReceipts keeps the reference). */
  members: Map<string, MemberState>;
  writer: ConversationWriter;
}

interface Recent {
  seq: number;
  mid: string;
  ts: number;
}

export class ConversationActor implements Actor<ConvMsg> {
  private state: Loaded | null = null;
  private head = 0;
  private queue: Queued[] = [];
  private inflight: Queued[] | null = null;
  private readonly recent = new Map<string, Recent>();
  private readonly receipts: ConversationReceipts;
  /** Projected member changes of queued and in-flight events (user -> state, null = removed). */
  private readonly overlay = new Map<string, MemberState | null>();
  private projectedSize = 0;
  /** conv.create requests waiting for the create event in flight. */
  private createWaiters: ConvOpMsg[] = [];
  private creating = false;
  private readonly maxMembers: number;
  /** Committed group entries held by the fan-out window (fanoutWindowMs), in commit order. */
  private held: DeliveredEntry[] = [];
  private heldTimer: TimerHandle | null = null;
  /** When the last windowed group fan-out went out (clock ms). */
  private lastFanoutAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ctx: ActorContext<ConvMsg>,
    private readonly deps: ConversationDeps,
  ) {
    this.receipts = new ConversationReceipts(ctx.key, deps);
    this.maxMembers = deps.maxMembers ?? DEFAULT_MAX_MEMBERS;
  }

  async activate(): Promise<void> {
    const conv = await this.deps.store.getConversation(this.ctx.key);
    if (conv !== null) this.adopt(await this.load(conv));
  }

  receive(msg: ConvMsg): void | Promise<void> {
    switch (msg.t) {
      case 'send':
        return this.onSend(msg);
      case 'delivered':
        return this.onDelivered(msg);
      case 'read':
        return this.receipts.readFrom(this.state?.conv.kind ?? null, this.state?.members ?? null, this.head, msg);
      case 'committed':
        return this.onCommitted(msg.results, msg.durationMs, msg.rowsFailed === true);
      case 'commit_failed':
        return this.onCommitFailed(msg);
      case 'fanout':
        return this.flushHeld();
      case 'op':
        return this.onOp(msg);
      case 'members':
        return this.onMembers(msg);
      case 'receipts':
        return this.onReceipts(msg);
      default: {
        const never: never = msg;
        throw new Error(`unhandled conversation message ${JSON.stringify(never)}`);
      }
    }
  }

  busy(): boolean {
    return this.inflight !== null || this.queue.length > 0;
  }

  canPassivate(): boolean {
    return !this.busy();
  }

  deactivated(): void {
    // Held deliveries are committed: they go out now (a hand-off's new owner does not have them).
    this.flushHeld();
    // Nothing may be left unanswered: the host only ends an idle activation, and a failed commit
    // answered its queue before asking to end.
    for (const q of this.queue) this.answerQueued(q, 'store_unavailable');
    for (const w of this.createWaiters) this.answerOp(w, 'store_unavailable');
    this.queue = [];
    this.createWaiters = [];
    this.state = null;
  }

  /**
   * The lease was lost (host hand-off): the sends and operations of the commit in flight and the
   * queued ones, for the new owner. This activation never answers them: the in-flight commit's
   * result is dropped with the activation, and the new owner's append answers it (`dup` if it had
   * landed; the new owner's higher epoch fences it otherwise; a re-run operation finds its effect
   * in the log and answers seq 0).
   */
  handBack(): ConvMsg[] {
    const held: ConvMsg[] = [];
    for (const q of [...(this.inflight ?? []), ...this.queue]) {
      if (q.send !== undefined) held.push(q.send);
      else if (q.op !== undefined && q.answer === true) held.push(q.op);
    }
    held.push(...this.createWaiters);
    this.createWaiters = [];
    this.inflight = null;
    this.queue = [];
    return held;
  }

  // ---- membership view ---------------------------------------------------------------------------

  /** The projected member set: committed plus the queued events' changes. */
  private view(state: Loaded): MemberView {
    const { overlay } = this;
    const committed = state.members;
    return {
      get: (u) => (overlay.has(u) ? (overlay.get(u) ?? undefined) : committed.get(u)),
      size: this.projectedSize,
      *entries() {
        for (const [u, s] of overlay) if (s !== null) yield [u, s];
        for (const e of committed) if (!overlay.has(e[0])) yield e;
      },
    };
  }

  private project(state: Loaded, e: SysEvent, ts: number): void {
    const v = this.view(state);
    // The seq is not known before the commit; the projection only answers who is a member with
    // which role, never the floor.
    for (const [u, s] of sysChanges(e, ts, 0, (x) => v.get(x))) {
      const was = v.get(u) !== undefined;
      this.projectedSize += (s !== null ? 1 : 0) - (was ? 1 : 0);
      this.overlay.set(u, s);
    }
  }

  // ---- sends -----------------------------------------------------------------------------------

  private onSend(m: ConvSend): void | Promise<void> {
    // Media ids are checked first, against the media index (the mailbox waits for that read, so the
    // conversation's sends keep their order); an id never uploaded refuses the send.
    if (m.media === undefined || m.media.length === 0) return this.onSendChecked(m);
    return (this.deps.media ?? NO_MEDIA).check(m.media, m.id).then((refusal) => {
      if (refusal === null) return this.onSendChecked(m);
      convMetrics.sent.inc({ result: refusal.code as Parameters<typeof errorFor>[0] });
      this.deps.router.push(m.session, refusal);
    });
  }

  private onSendChecked(m: ConvSend): void | Promise<void> {
    if (this.state !== null) return this.accept(this.state, m);
    // Absent at activation: created since by another path, or a first send to a direct id that
    // creates it. The mailbox waits meanwhile; only sends to missing conversations pay the read.
    return this.resolve(m).then((ok) => {
      if (ok) this.accept(this.state!, m);
    });
  }

  private accept(state: Loaded, m: ConvSend): void {
    const { user, device } = m.session;
    const refused = mayPost(state.conv.kind, this.view(state).get(user)?.role);
    if (refused !== null) return this.answerError(m, refused);
    const hit = this.recent.get(dedupeKey(device, m.cmid));
    if (hit !== undefined) {
      convMetrics.sent.inc({ result: 'duplicate' });
      this.deps.router.push(m.session, { t: 'sent', id: m.id, conv: this.ctx.key, seq: hit.seq, mid: hit.mid, dup: true, ts: hit.ts });
      return;
    }
    // Bounded: the mailbox caps what waits to be read, this caps what waits for the store.
    if (this.queue.length >= this.deps.maxQueuedSends) return this.answerError(m, 'too_many_inflight');
    const now = this.deps.clock.now();
    this.queue.push({
      send: m,
      draft: { messageId: newMessageId(now), senderUser: user, senderDevice: device, clientMsgId: m.cmid, body: m.body, sentAtMs: now, ...(m.media !== undefined && m.media.length > 0 ? { media: m.media } : {}) },
    });
    this.pump();
  }

  /** Loads or creates (direct ids only) the conversation a send addresses; false when answered. */
  private async resolve(m: ConvSend): Promise<boolean> {
    const pair = parseDirectConversationId(this.ctx.key);
    try {
      const existing = await this.deps.store.getConversation(this.ctx.key);
      if (existing !== null) {
        this.adopt(await this.load(existing));
        return true;
      }
      if (pair === null || !pair.includes(m.session.user)) {
        this.answerError(m, 'not_found');
        return false;
      }
      const [a, b] = pair;
      const { conversation } = await this.deps.store.createConversation({
        id: this.ctx.key,
        kind: 'direct',
        createdBy: m.session.user,
        createdAtMs: this.deps.clock.now(),
        members: (a === b ? [a] : [a, b]).map((userId) => ({ userId, role: 'member' as const })),
      });
      this.adopt(await this.load(conversation));
      return true;
    } catch (err) {
      this.deps.log.warn({ err }, 'loading or creating a conversation failed');
      this.answerError(m, errorCodeOf(err));
      return false;
    }
  }

  /** Loads the conversation when it exists and is not loaded yet; null when it does not exist. */
  private async ensureLoaded(): Promise<Loaded | null> {
    if (this.state !== null) return this.state;
    const existing = await this.deps.store.getConversation(this.ctx.key);
    if (existing === null) return null;
    this.adopt(await this.load(existing));
    return this.state;
  }

  private async load(conv: Conversation): Promise<Loaded> {
    const members = new Map<string, MemberState>();
    for (let after: string | undefined; ; ) {
      const page = await this.deps.store.listMembers(conv.id, { limit: MEMBER_PAGE, ...(after === undefined ? {} : { afterUserId: after }) });
      for (const mem of page) members.set(mem.userId, { role: mem.role, joined: mem.joinedAtMs, from: mem.fromSeq });
      if (page.length < MEMBER_PAGE) break;
      after = page[page.length - 1]!.userId;
    }
    // A direct conversation's members follow from its id. A creation cut off between the
    // conversation row and its member rows (a node killed mid-creation) leaves members missing, and
    // a retried creation by another node carries another creation time, so the store does not
    // finish it: the activation does (putMember is idempotent), or that member could never send.
    const pair = conv.kind === 'direct' ? parseDirectConversationId(conv.id) : null;
    if (pair !== null) {
      for (const userId of new Set(pair)) {
        if (members.has(userId)) continue;
        await this.deps.store.putMember(conv.id, userId, 'member', conv.createdAtMs);
        members.set(userId, { role: 'member', joined: conv.createdAtMs, from: 0 });
        this.deps.log.warn({ conv: conv.id, user: userId }, 'repaired a missing member of a direct conversation');
      }
    }
    const writer = await this.deps.store.openWriter(conv.id, await this.deps.epochs.next(conv.id));
    if (conv.meta[PENDING_KEY] !== undefined) conv = await repairRows(this.deps.store, this.deps.log, conv, members, Number(conv.meta[PENDING_KEY]), writer.head);
    return { conv, members, writer };
  }

  private adopt(loaded: Loaded): void {
    this.state = loaded;
    this.head = loaded.writer.head;
    this.overlay.clear();
    this.projectedSize = loaded.members.size;
  }

  // ---- operations ----------------------------------------------------------------------------------

  private onOp(m: ConvOpMsg): void | Promise<void> {
    // An avatar is a media id that must have been uploaded, checked first like a send's media (the
    // mailbox waits for the index read); members then download it (recorded with the commit).
    const avatar = m.op.op === 'create' || m.op.op === 'meta' ? m.op.avatar : undefined;
    if (avatar === undefined) return this.onOpChecked(m);
    return (this.deps.media ?? NO_MEDIA).check([avatar], m.id).then((refusal) => {
      if (refusal === null) return this.onOpChecked(m);
      convMetrics.ops.inc({ op: m.op.op, result: refusal.code as Parameters<typeof errorFor>[0] });
      const unknown = refusal.code === 'invalid_field';
      this.deps.router.push(m.session, unknown ? errorFrame('invalid_field', `avatar: ${refusal.msg}`, m.id, 'avatar') : refusal);
    });
  }

  private onOpChecked(m: ConvOpMsg): void | Promise<void> {
    if (m.op.op === 'create') return this.onCreate(m);
    if (this.state !== null) return this.planAndQueue(this.state, m);
    return this.ensureLoaded().then(
      (state) => {
        if (state === null) return this.answerOp(m, 'not_found');
        return this.planAndQueue(state, m);
      },
      (err: unknown) => {
        this.deps.log.warn({ err }, 'loading a conversation failed');
        this.answerOp(m, errorCodeOf(err));
      },
    );
  }

  private planAndQueue(state: Loaded, m: ConvOpMsg): void | Promise<void> {
    const op = m.op;
    if (op.op === 'create') return;
    const now = this.deps.clock.now();
    const plan = planOp({ kind: state.conv.kind, members: this.view(state), user: m.session.user, op, maxMembers: this.maxMembers, now });
    if ('error' in plan) return this.answerOp(m, plan.error, plan.detail);
    if (plan.row !== undefined) return this.writeSubscriberRow(state, m, plan.row.user, plan.row.state);
    if (plan.events.length === 0) return this.answerOk(m, 0);
    if (this.queue.length + plan.events.length > this.deps.maxQueuedSends) return this.answerOp(m, 'too_many_inflight');
    this.queueEvents(state, m, plan.events, now);
  }

  private queueEvents(state: Loaded, m: ConvOpMsg, events: SysEvent[], now: number, clientMsgId?: string): void {
    events.forEach((e, i) => {
      const mid = newMessageId(now);
      this.project(state, e, now);
      this.queue.push({
        op: m,
        answer: i === events.length - 1,
        sys: e,
        draft: { messageId: mid, senderUser: m.session.user, senderDevice: SYS_DEVICE, clientMsgId: clientMsgId ?? `e:${mid}`, body: encodeSys(e), sentAtMs: now },
      });
    });
    this.pump();
  }

  /** A channel subscriber joins or leaves: its member row only (no event), in this turn. */
  private async writeSubscriberRow(state: Loaded, m: ConvOpMsg, user: string, s: MemberState | null): Promise<void> {
    if (this.overlay.has(user)) return this.answerOp(m, 'too_many_inflight', 'a membership change of this user is being committed; retry');
    try {
      await writeRow(this.deps.store, state.conv, user, s);
    } catch (err) {
      this.deps.log.warn({ err }, 'writing a channel subscriber row failed');
      return this.answerOp(m, errorCodeOf(err));
    }
    if (this.state !== state) return this.answerOp(m, 'store_unavailable');
    if (s === null) state.members.delete(user);
    else state.members.set(user, s);
    if (!this.busy()) this.projectedSize = state.members.size;
    else this.projectedSize += s === null ? -1 : 1;
    this.deps.channels?.membership(state.conv.id, user, s !== null, m.session.user === user ? m.session : undefined);
    this.answerOk(m, 0);
  }

  private async onCreate(m: ConvOpMsg): Promise<void> {
    const op = m.op;
    if (op.op !== 'create') return;
    const user = m.session.user;
    if (createdConversationId(user, op.kind, op.cmid) !== this.ctx.key) return this.answerOp(m, 'invalid_field', 'the conversation id does not match the creating request');
    const members = [...new Set(op.members)].filter((u) => u !== user);
    if (op.kind === 'group' && members.length + 1 > this.maxMembers) return this.answerOp(m, 'group_full', `a group has at most ${this.maxMembers} members`);
    let state = this.state;
    if (state === null) {
      try {
        state = await this.ensureLoaded();
        if (state === null) {
          // Created without member rows and with the marker: the create event (seq 1) adds them.
          const { conversation } = await this.deps.store.createConversation({
            id: this.ctx.key,
            kind: op.kind,
            createdBy: user,
            createdAtMs: this.deps.clock.now(),
            meta: { [PENDING_KEY]: '0' },
            members: [],
          });
          this.adopt(await this.load(conversation));
          state = this.state!;
        }
      } catch (err) {
        this.deps.log.warn({ err }, 'creating a conversation failed');
        return this.answerOp(m, errorCodeOf(err));
      }
    }
    if (state.conv.createdBy !== user || state.conv.kind !== op.kind) return this.answerOp(m, 'forbidden');
    // The create event is always seq 1 (nobody is a member before it): a head above 0 means done.
    if (this.head > 0) return this.answerOk(m, 1);
    if (this.creating) {
      this.createWaiters.push(m);
      return;
    }
    this.creating = true;
    const e: SysEvent = { op: 'create', by: user, kind: op.kind };
    if (members.length > 0) e.users = members;
    if (op.name !== undefined) e.name = op.name;
    if (op.avatar !== undefined) e.avatar = op.avatar;
    this.queueEvents(state, m, [e], this.deps.clock.now(), `c:${op.cmid}`);
  }

  private onMembers(m: ConvMembersMsg): void | Promise<void> {
    const answer = (state: Loaded | null): void => {
      if (state === null) return this.pushError(m, 'not_found');
      if (!state.members.has(m.session.user)) return this.pushError(m, 'not_member');
      const after = m.after ?? '';
      const users = [...state.members.keys()].filter((u) => u > after).sort();
      const page = users.slice(0, m.limit);
      const frame: MembersPageFrame = {
        t: 'members.page',
        id: m.id,
        conv: this.ctx.key,
        members: page.map((u) => {
          const s = state.members.get(u)!;
          return { user: u, role: s.role, joined: s.joined };
        }),
        next: users.length > m.limit ? page[page.length - 1]! : null,
      };
      this.deps.router.push(m.session, frame);
    };
    if (this.state !== null) return answer(this.state);
    return this.ensureLoaded().then(answer, (err: unknown) => this.pushError(m, errorCodeOf(err)));
  }

  private onReceipts(m: ConvReceiptsMsg): void | Promise<void> {
    const answer = (state: Loaded | null): void => {
      if (state === null) return this.pushError(m, 'not_found');
      if (!state.members.has(m.session.user)) return this.pushError(m, 'not_member');
      if (state.conv.kind !== 'group') return this.pushError(m, 'forbidden', 'receipt state is kept for groups only');
      this.receipts.query(state.members, this.head, m);
    };
    if (this.state !== null) return answer(this.state);
    return this.ensureLoaded().then(answer, (err: unknown) => this.pushError(m, errorCodeOf(err)));
  }

  // ---- receipts of departed members --------------------------------------------------------------

  /** One dack, or several devices' dacks coalesced by their shard (src/actors/dack-batcher.ts). */
  private onDelivered(m: ConvDelivered): void {
    for (const d of dacksOf(m)) this.deliveredOne(d);
    this.receipts.settleDelivered(this.state?.members ?? null);
  }

  private deliveredOne(m: DeviceDack): void {
    const state = this.state;
    if (state === null || state.conv.kind === 'direct' || state.members.has(m.session.user)) {
      return this.receipts.deliveredFrom(state?.conv.kind ?? null, state?.members ?? null, this.head, this.inflight?.length ?? 0, m);
    }
    // A removed (or departed) member's device catching up to its removal through sync: its cursor
    // may advance up to the seq of that event, never beyond, and nobody else is told. Not awaited
    // (only this path reads the store), so a departed user's dacks never hold up the group's sends.
    const { store, router, cursors, log } = this.deps;
    const { user, device } = m.session;
    store.listDepartures(user).then(
      (list) => {
        const d = list.find((x) => x.conversationId === this.ctx.key);
        if (d === undefined || m.seq > d.leftSeq) return void router.push(m.session, errorFor('not_member'));
        if (m.seq > 0) cursors.add({ userId: user, deviceId: device, conversationId: this.ctx.key, seq: m.seq });
      },
      (err: unknown) => {
        log.warn({ err }, 'reading the departures of a user failed');
        router.push(m.session, errorFor(errorCodeOf(err)));
      },
    );
  }

  // ---- commits -------------------------------------------------------------------------------------

  /** Starts the next group commit when none is in flight. */
  private pump(): void {
    if (this.inflight !== null || this.queue.length === 0 || this.state === null) return;
    const state = this.state;
    const batch = this.queue.splice(0, this.deps.maxCommitBatch);
    this.inflight = batch;
    convMetrics.commitBatch.observe(batch.length);
    const started = this.deps.clock.now();
    const elapsed = (): number => this.deps.clock.now() - started;
    const events = batch.some((q) => q.sys !== undefined);
    const appliedSeq = this.head;
    const run = async (): Promise<{ results: AppendResult[]; rowsFailed: boolean }> => {
      if (events) await this.deps.store.updateConversationMeta(state.conv.id, { ...withoutMarker(state.conv.meta), [PENDING_KEY]: String(appliedSeq) });
      const results = await state.writer.append(batch.map((q) => q.draft));
      if (!events) return { results, rowsFailed: false };
      try {
        await writeBatchRows(
          this.deps.store,
          state.conv,
          state.members,
          batch.flatMap((q, i) => (q.sys === undefined || i >= results.length || results[i]!.duplicate ? [] : [{ e: q.sys, ts: q.draft.sentAtMs, seq: results[i]!.seq }])),
        );
        return { results, rowsFailed: false };
      } catch (err) {
        this.deps.log.warn({ err }, 'writing member rows after a commit failed; the next activation repairs them');
        return { results, rowsFailed: true };
      }
    };
    run().then(
      ({ results, rowsFailed }) => this.ctx.self({ t: 'committed', results, durationMs: elapsed(), ...(rowsFailed ? { rowsFailed } : {}) }),
      (err: unknown) => {
        const e = err as { code?: unknown; retryable?: unknown; message?: unknown; committed?: unknown };
        this.ctx.self({
          t: 'commit_failed',
          code: typeof e.code === 'string' ? e.code : 'internal',
          retryable: e.retryable === true,
          message: typeof e.message === 'string' ? e.message : String(err),
          committed: Array.isArray(e.committed) ? (e.committed as AppendResult[]) : [],
          durationMs: elapsed(),
        });
      },
    );
  }

  private onCommitted(results: AppendResult[], durationMs: number, rowsFailed: boolean): void | Promise<void> {
    const batch = this.inflight ?? [];
    this.inflight = null;
    convMetrics.commitDuration.observe({ result: 'ok' }, durationMs / 1000);
    const after = (): void => {
      if (rowsFailed) {
        for (const q of this.queue) this.answerQueued(q, 'store_unavailable');
        this.queue = [];
        this.ctx.deactivate('member rows not written');
        return;
      }
      this.pump();
    };
    const recording = this.completeWithMedia(batch, results);
    if (recording !== undefined) return recording.then(after);
    after();
  }

  /**
   * `complete`, after the media references of the committed messages are recorded (so every
   * receiver can get a download URL once it has the message). The mailbox waits for that write. When
   * it fails, the sends with media are answered with a retryable error instead of `sent` and are not
   * fanned out (devices sync them; the client's retry is a duplicate that records again); the rest
   * of the batch completes as usual (an avatar event too: its URL is refused until the avatar is set
   * again).
   */
  private completeWithMedia(batch: Queued[], results: AppendResult[]): void | Promise<void> {
    const n = Math.min(batch.length, results.length);
    // A group's or channel's avatar (a meta or create event) is a media id the members fetch too.
    const ids = batch.slice(0, n).flatMap((q) => [...(q.draft.media ?? []), ...(q.sys?.avatar === undefined ? [] : [q.sys.avatar])]);
    if (ids.length === 0) return this.complete(batch, results);
    return (this.deps.media ?? NO_MEDIA).record(this.ctx.key, ids).then(
      () => this.complete(batch, results),
      (err: unknown) => {
        this.deps.log.warn({ err }, 'recording media references failed; the sends with media are answered store_unavailable');
        const keep: number[] = [];
        for (let i = 0; i < n; i++) {
          if (batch[i]!.draft.media === undefined) keep.push(i);
          else this.answerQueued(batch[i]!, 'store_unavailable');
        }
        this.complete(keep.map((i) => batch[i]!), keep.map((i) => results[i]!));
      },
    );
  }

  private onCommitFailed(f: ConvCommitFailed): void | Promise<void> {
    const batch = this.inflight ?? [];
    this.inflight = null;
    convMetrics.commitDuration.observe({ result: f.code }, f.durationMs / 1000);
    this.deps.log.warn({ code: f.code, err: f.message, committed: f.committed.length, failed: batch.length - f.committed.length }, 'group commit failed');
    const recording = this.completeWithMedia(batch.slice(0, f.committed.length), f.committed);
    if (recording !== undefined) return recording.then(() => this.failRest(batch, f));
    this.failRest(batch, f);
  }

  private failRest(batch: Queued[], f: ConvCommitFailed): void {
    const code = storeFailureCode(f.code);
    for (const q of [...batch.slice(f.committed.length), ...this.queue]) this.answerQueued(q, code);
    for (const w of this.createWaiters) this.answerOp(w, code);
    this.createWaiters = [];
    this.queue = [];
    // Stop acking with this writer: fenced out, or unsure what the store holds. A fresh activation
    // takes a new epoch and re-reads the head (and repairs rows a committed event left pending).
    this.ctx.deactivate(`commit failed: ${f.code}`);
  }

  /**
   * Acks a committed batch (results in draft order) and fans the new entries out, each to the members
   * at its seq: sends accumulate into a run for the current members; an event flushes the run, goes
   * to the members before and after it, and updates the committed members.
   */
  private complete(batch: Queued[], results: AppendResult[]): void {
    const conv = this.ctx.key;
    let fresh: DeliveredEntry[] = [];
    const fannedOut = new Set<number>();
    const refetch: number[] = [];
    for (let i = 0; i < results.length && i < batch.length; i++) {
      const q = batch[i]!;
      const { draft } = q;
      const r = results[i]!;
      this.head = Math.max(this.head, r.seq);
      if (q.sys !== undefined) {
        if (!r.duplicate && !fannedOut.has(r.seq)) {
          fannedOut.add(r.seq);
          if (fresh.length > 0) this.fanOut(fresh);
          fresh = [];
          this.commitEvent(q.sys, { seq: r.seq, mid: r.messageId, from: draft.senderUser, fdev: SYS_DEVICE, body: new Uint8Array(0), ts: draft.sentAtMs, cmid: draft.clientMsgId, sys: q.sys });
        }
        if (q.sys.op === 'create') this.createDone(r.seq);
        if (q.answer === true && q.op !== undefined) this.answerOk(q.op, r.seq);
        continue;
      }
      const send = q.send!;
      const key = dedupeKey(draft.senderDevice, draft.clientMsgId);
      const known = this.recent.get(key);
      const ts = r.duplicate ? (known?.ts ?? messageIdTimeMs(r.messageId) ?? draft.sentAtMs) : draft.sentAtMs;
      this.remember(key, { seq: r.seq, mid: r.messageId, ts });
      convMetrics.sent.inc({ result: r.duplicate ? 'duplicate' : 'ok' });
      this.deps.router.push(send.session, { t: 'sent', id: send.id, conv, seq: r.seq, mid: r.messageId, dup: r.duplicate, ts });
      if (fannedOut.has(r.seq)) continue;
      fannedOut.add(r.seq);
      if (!r.duplicate) {
        fresh.push({ seq: r.seq, mid: r.messageId, from: draft.senderUser, fdev: draft.senderDevice, body: draft.body, ts, cmid: draft.clientMsgId, ...(draft.media === undefined ? {} : { media: draft.media }) });
      } else if (known === undefined) {
        // A retry of a message an earlier activation committed: that activation may have ended
        // before fanning it out (a crashed shard), so deliver it again; devices dedupe by mid.
        refetch.push(r.seq);
      }
    }
    if (fresh.length > 0) this.fanOut(fresh);
    for (const seq of refetch) this.refanOut(seq);
    if (!this.busy()) {
      // Everything queued is committed: the projection is the committed set.
      this.overlay.clear();
      if (this.state !== null) this.projectedSize = this.state.members.size;
    }
  }

  /** Applies a committed event to the members and meta, and delivers it to whoever it concerns. */
  private commitEvent(e: SysEvent, entry: DeliveredEntry): void {
    const state = this.state;
    if (state === null) return;
    // What the window holds goes to the members before the event, ahead of it.
    this.flushHeld();
    const before = new Set(state.members.keys());
    applySys(state.members, e, entry.ts, entry.seq);
    if (e.op === 'meta' || e.op === 'create') state.conv = { ...state.conv, meta: metaAfter(withoutMarker(state.conv.meta), e) };
    const kind = state.conv.kind;
    const deliver = (users: Iterable<string>): void => this.deps.router.tellUsers(users, { t: 'deliver', conv: this.ctx.key, kind, msgs: [entry] });
    if (kind === 'channel' && this.deps.channels !== undefined) {
      const channels = this.deps.channels;
      // Subscribers read it from the topic; the users it names (and its author) get it directly,
      // since their sessions' topic subscriptions change with it.
      // (e.by too: the creator of a channel follows it from its create.)
      for (const u of new Set([e.by, ...(e.users ?? [])])) if (state.members.has(u) && !before.has(u)) channels.membership(this.ctx.key, u, true);
      channels.publish(this.ctx.key, [entry]);
      deliver(new Set([e.by, ...(e.users ?? [])]));
      for (const u of e.users ?? []) if (before.has(u) && !state.members.has(u)) channels.membership(this.ctx.key, u, false);
    } else {
      deliver(new Set([...before, ...state.members.keys()]));
    }
    if (kind === 'group') {
      this.receipts.authored(e.by, entry.seq);
      this.receipts.membersChanged(state.members);
    }
  }

  private createDone(seq: number): void {
    this.creating = false;
    const waiters = this.createWaiters;
    this.createWaiters = [];
    for (const w of waiters) this.answerOk(w, seq);
  }

  private fanOut(msgs: DeliveredEntry[]): void {
    const state = this.state;
    if (state === null) return;
    msgs.sort((x, y) => x.seq - y.seq);
    const kind = state.conv.kind;
    if (kind === 'channel' && this.deps.channels !== undefined) {
      this.deps.channels.publish(this.ctx.key, msgs);
      // The senders' other devices (with cmid, so their outboxes settle): each gets its own posts.
      const bySender = new Map<string, DeliveredEntry[]>();
      for (const m of msgs) {
        const list = bySender.get(m.from);
        if (list === undefined) bySender.set(m.from, [m]);
        else list.push(m);
      }
      for (const [user, own] of bySender) this.deps.router.tell('user', user, { t: 'deliver', conv: this.ctx.key, kind, msgs: own });
      return;
    }
    const windowMs = this.deps.fanoutWindowMs ?? 0;
    if (kind !== 'group' || windowMs <= 0) return this.tellMembers(state, msgs);
    const now = this.deps.clock.now();
    if (this.held.length === 0 && now - this.lastFanoutAt >= windowMs) {
      this.lastFanoutAt = now;
      return this.tellMembers(state, msgs);
    }
    for (const m of msgs) this.held.push(m);
    convMetrics.fanoutHeld.inc(msgs.length);
    this.heldTimer ??= this.deps.clock.setTimer(Math.max(0, this.lastFanoutAt + windowMs - now), () => this.ctx.self({ t: 'fanout' }));
  }

  /** Fans out what the window holds (its timer, an event, the end of the activation). */
  private flushHeld(): void {
    if (this.heldTimer !== null) {
      this.deps.clock.clearTimer(this.heldTimer);
      this.heldTimer = null;
    }
    const state = this.state;
    if (this.held.length === 0 || state === null) return;
    const msgs = this.held;
    this.held = [];
    this.lastFanoutAt = this.deps.clock.now();
    // A re-fetched retry (refanOut) may come after later seqs.
    msgs.sort((x, y) => x.seq - y.seq);
    this.tellMembers(state, msgs);
  }

  /** One `deliver` of `msgs` to every member's user actor. */
  private tellMembers(state: Loaded, msgs: DeliveredEntry[]): void {
    const kind = state.conv.kind;
    this.deps.router.tellUsers(state.members.keys(), { t: 'deliver', conv: this.ctx.key, kind, msgs });
    if (kind === 'group') for (const m of msgs) this.receipts.authored(m.from, m.seq);
  }

  private refanOut(seq: number): void {
    const { store, log } = this.deps;
    store.readForward(this.ctx.key, seq - 1, 1).then(
      (page) => {
        const m = page.messages[0];
        if (m === undefined || m.seq !== seq) return;
        this.fanOut([{ seq, mid: m.messageId, from: m.senderUser, fdev: m.senderDevice, body: m.body, ts: m.sentAtMs, cmid: m.clientMsgId, ...(m.media === undefined ? {} : { media: m.media }) }]);
      },
      (err: unknown) => log.warn({ err }, 're-reading a replayed message for delivery failed (devices will sync it)'),
    );
  }

  private remember(key: string, r: Recent): void {
    this.recent.delete(key);
    this.recent.set(key, r);
    if (this.recent.size > DEDUPE_CAPACITY) this.recent.delete(this.recent.keys().next().value!);
  }

  // ---- answers -------------------------------------------------------------------------------------

  private answerQueued(q: Queued, code: ErrorCode): void {
    if (q.send !== undefined) this.answerError(q.send, code);
    else if (q.op !== undefined && q.answer === true) this.answerOp(q.op, code);
  }

  private answerError(m: ConvSend, code: ErrorCode): void {
    convMetrics.sent.inc({ result: code });
    this.deps.router.push(m.session, errorFor(code, m.id));
  }

  private answerOp(m: ConvOpMsg, code: ErrorCode, detail?: string): void {
    convMetrics.ops.inc({ op: m.op.op, result: code });
    this.deps.router.push(m.session, errorFor(code, m.id, detail));
  }

  private answerOk(m: ConvOpMsg, seq: number): void {
    convMetrics.ops.inc({ op: m.op.op, result: 'ok' });
    const frame: ConvOkFrame = { t: 'conv.ok', id: m.id, conv: this.ctx.key, seq };
    this.deps.router.push(m.session, frame);
  }

  private pushError(m: ConvMembersMsg | ConvReceiptsMsg, code: ErrorCode, detail?: string): void {
    this.deps.router.push(m.session, errorFor(code, m.id, detail));
  }
}

function dedupeKey(device: string, cmid: string): string {
  return `${device}\u0000${cmid}`;
}
