/**
 * The conversation actor: the single writer of one conversation on this node.
 *
 * - Activation loads the conversation and its members and claims the writer role
 *   (`openWriter(conv, epoch)`). A conversation that does not exist yet stays absent until a send to
 *   its canonical direct id (`d:a:b`) by a or b creates it (createConversation is idempotent).
 * - Sends are group-committed: while one append is in flight new sends queue; the next append
 *   takes up to `maxCommitBatch`. `sent` goes to the sender only after the append resolved.
 *   Grouping across conversations (1:1 traffic, where each conversation has about one message in
 *   flight) is the store engine's job, not the actor's: the embedded engine puts the appends of all
 *   conversations that queue while one transaction is in flight into the next transaction
 *   (src/store/embedded/committer.ts); scylla cannot (a fenced batch is one partition).
 * - After a commit, one `deliver` per member's user actor (the sender's own user actor included:
 *   it delivers to the sender's other devices).
 * - Any commit failure fails the rest of the queue with a retryable error and ends the activation;
 *   the next message activates afresh with a new epoch (a lost fence can never ack again).
 * - Receipts (dacks via the device's user actor, reads) are handled by ConversationReceipts.
 */
import { newMessageId, messageIdTimeMs, parseDirectConversationId } from '../protocol/ids.js';
import type { Store, ConversationWriter } from '../store/store.js';
import type { AppendResult, Conversation, MessageDraft, Role } from '../store/types.js';
import { errorCodeOf, errorFor, storeFailureCode } from './answers.js';
import type { Clock } from './clock.js';
import type { CursorBatcher } from './cursor-batcher.js';
import type { EpochSource } from './epochs.js';
import type { Actor, ActorContext } from './host.js';
import type { ActorLog } from './log.js';
import { ConversationReceipts } from './conversation-receipts.js';
import type { ConvCommitFailed, ConvMsg, ConvSend, DeliveredEntry } from './messages.js';
import { convMetrics } from './metrics.js';
import type { Router } from './router.js';

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
}

/** Recent (device, cmid) -> result kept per activation, so common retries skip the store. */
const DEDUPE_CAPACITY = 1024;
const MEMBER_PAGE = 1000;

interface Queued {
  send: ConvSend;
  draft: MessageDraft;
}

interface Loaded {
  conv: Conversation;
  members: Map<string, Role>;
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

  constructor(
    private readonly ctx: ActorContext<ConvMsg>,
    private readonly deps: ConversationDeps,
  ) {
    this.receipts = new ConversationReceipts(ctx.key, deps);
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
        return this.receipts.delivered(this.state?.members ?? null, this.head, this.inflight?.length ?? 0, msg);
      case 'read':
        return this.receipts.read(this.state?.members ?? null, this.head, msg);
      case 'committed':
        return this.onCommitted(msg.results, msg.durationMs);
      case 'commit_failed':
        return this.onCommitFailed(msg);
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
    // Nothing may be left unanswered: the host only ends an idle activation, and a failed commit
    // answered its queue before asking to end.
    for (const q of this.queue) this.answerError(q.send, 'store_unavailable');
    this.queue = [];
    this.state = null;
  }

  // ---- sends -----------------------------------------------------------------------------------

  private onSend(m: ConvSend): void | Promise<void> {
    if (this.state !== null) return this.accept(this.state, m);
    // Absent at activation: created since by another path, or a first send to a direct id that
    // creates it. The mailbox waits meanwhile; only sends to missing conversations pay the read.
    return this.resolve(m).then((ok) => {
      if (ok) this.accept(this.state!, m);
    });
  }

  private accept(state: Loaded, m: ConvSend): void {
    const { user, device } = m.session;
    if (!state.members.has(user)) return this.answerError(m, 'not_member');
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
      draft: { messageId: newMessageId(now), senderUser: user, senderDevice: device, clientMsgId: m.cmid, body: m.body, sentAtMs: now },
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

  private async load(conv: Conversation): Promise<Loaded> {
    const members = new Map<string, Role>();
    for (let after: string | undefined; ; ) {
      const page = await this.deps.store.listMembers(conv.id, { limit: MEMBER_PAGE, ...(after === undefined ? {} : { afterUserId: after }) });
      for (const mem of page) members.set(mem.userId, mem.role);
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
        members.set(userId, 'member');
        this.deps.log.warn({ conv: conv.id, user: userId }, 'repaired a missing member of a direct conversation');
      }
    }
    const writer = await this.deps.store.openWriter(conv.id, await this.deps.epochs.next(conv.id));
    return { conv, members, writer };
  }

  private adopt(loaded: Loaded): void {
    this.state = loaded;
    this.head = loaded.writer.head;
  }

  /** Starts the next group commit when none is in flight. */
  private pump(): void {
    if (this.inflight !== null || this.queue.length === 0 || this.state === null) return;
    const batch = this.queue.splice(0, this.deps.maxCommitBatch);
    this.inflight = batch;
    convMetrics.commitBatch.observe(batch.length);
    const started = this.deps.clock.now();
    const elapsed = (): number => this.deps.clock.now() - started;
    this.state.writer.append(batch.map((q) => q.draft)).then(
      (results) => this.ctx.self({ t: 'committed', results, durationMs: elapsed() }),
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

  private onCommitted(results: AppendResult[], durationMs: number): void {
    const batch = this.inflight ?? [];
    this.inflight = null;
    convMetrics.commitDuration.observe({ result: 'ok' }, durationMs / 1000);
    this.complete(batch, results);
    this.pump();
  }

  private onCommitFailed(f: ConvCommitFailed): void {
    const batch = this.inflight ?? [];
    this.inflight = null;
    convMetrics.commitDuration.observe({ result: f.code }, f.durationMs / 1000);
    this.deps.log.warn({ code: f.code, err: f.message, committed: f.committed.length, failed: batch.length - f.committed.length }, 'group commit failed');
    this.complete(batch.slice(0, f.committed.length), f.committed);
    const code = storeFailureCode(f.code);
    for (const q of [...batch.slice(f.committed.length), ...this.queue]) this.answerError(q.send, code);
    this.queue = [];
    // Stop acking with this writer: fenced out, or unsure what the store holds. A fresh activation
    // takes a new epoch and re-reads the head.
    this.ctx.deactivate(`commit failed: ${f.code}`);
  }

  /** Acks a committed batch (results in draft order) and fans the new messages out. */
  private complete(batch: Queued[], results: AppendResult[]): void {
    const conv = this.ctx.key;
    const fresh: DeliveredEntry[] = [];
    const fannedOut = new Set<number>();
    const refetch: number[] = [];
    for (let i = 0; i < results.length && i < batch.length; i++) {
      const { send, draft } = batch[i]!;
      const r = results[i]!;
      const key = dedupeKey(draft.senderDevice, draft.clientMsgId);
      const known = this.recent.get(key);
      const ts = r.duplicate ? (known?.ts ?? messageIdTimeMs(r.messageId) ?? draft.sentAtMs) : draft.sentAtMs;
      this.remember(key, { seq: r.seq, mid: r.messageId, ts });
      this.head = Math.max(this.head, r.seq);
      convMetrics.sent.inc({ result: r.duplicate ? 'duplicate' : 'ok' });
      this.deps.router.push(send.session, { t: 'sent', id: send.id, conv, seq: r.seq, mid: r.messageId, dup: r.duplicate, ts });
      if (fannedOut.has(r.seq)) continue;
      fannedOut.add(r.seq);
      if (!r.duplicate) {
        fresh.push({ seq: r.seq, mid: r.messageId, from: draft.senderUser, fdev: draft.senderDevice, body: draft.body, ts, cmid: draft.clientMsgId });
      } else if (known === undefined) {
        // A retry of a message an earlier activation committed: that activation may have ended
        // before fanning it out (a crashed shard), so deliver it again; devices dedupe by mid.
        refetch.push(r.seq);
      }
    }
    if (fresh.length > 0) this.fanOut(fresh);
    for (const seq of refetch) this.refanOut(seq);
  }

  private fanOut(msgs: DeliveredEntry[]): void {
    const state = this.state;
    if (state === null) return;
    msgs.sort((x, y) => x.seq - y.seq);
    for (const user of state.members.keys()) {
      this.deps.router.tell('user', user, { t: 'deliver', conv: this.ctx.key, kind: state.conv.kind, msgs });
    }
  }

  private refanOut(seq: number): void {
    const { store, log } = this.deps;
    store.readForward(this.ctx.key, seq - 1, 1).then(
      (page) => {
        const m = page.messages[0];
        if (m === undefined || m.seq !== seq) return;
        this.fanOut([{ seq, mid: m.messageId, from: m.senderUser, fdev: m.senderDevice, body: m.body, ts: m.sentAtMs, cmid: m.clientMsgId }]);
      },
      (err: unknown) => log.warn({ err }, 're-reading a replayed message for delivery failed (devices will sync it)'),
    );
  }

  private remember(key: string, r: Recent): void {
    this.recent.delete(key);
    this.recent.set(key, r);
    if (this.recent.size > DEDUPE_CAPACITY) this.recent.delete(this.recent.keys().next().value!);
  }

  private answerError(m: ConvSend, code: Parameters<typeof errorFor>[0]): void {
    convMetrics.sent.inc({ result: code });
    this.deps.router.push(m.session, errorFor(code, m.id));
  }
}

function dedupeKey(device: string, cmid: string): string {
  return `${device}\u0000${cmid}`;
}
