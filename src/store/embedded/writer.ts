/**
 * The embedded engine's ConversationWriter: fenced, idempotent group commits, one lmdb transaction
 * per batch (lmdb has no partitions, so a batch that spans buckets still commits all or nothing and
 * `StoreError.committed` is never set by this engine).
 */
import { StoreError } from '../errors.js';
import type { StoreOp } from '../metrics.js';
import type { ConversationWriter } from '../store.js';
import type { AppendResult, MessageDraft } from '../types.js';
import { wrapLmdbError } from './lmdb-errors.js';
import { idempotencyExpiryKey, idempotencyKey, messageKey } from './keys.js';
import type { IdempotencyRow, LogState, MessageRow } from './records.js';
import type { EngineContext } from './tables.js';
import { checkDrafts } from './validate.js';

/** The store side a writer needs: run an operation against the open engine (metrics, close tracking). */
export interface WriterHost {
  run<T>(op: StoreOp, fn: (ctx: EngineContext) => Promise<T>): Promise<T>;
}

/**
 * Expired idempotency records swept per append. Sweeping rides on appends, inside their transaction,
 * so it costs no extra commit and stays bounded: the table shrinks at up to this many per batch,
 * which outpaces growth (at most one record per appended message).
 */
export const SWEEP_PER_APPEND = 64;

export type AppendOutcome =
  | { kind: 'ok'; results: AppendResult[]; head: number }
  | { kind: 'not_found' }
  | { kind: 'stale_epoch'; current: number }
  | { kind: 'conflict'; storedHead: number; seq: number };

/** Most append calls committed together in one group; bounds the latency a group adds. */
const MAX_CALLS_PER_GROUP = 256;

/**
 * Which group commit the engine uses (store.embedded.groupCommit):
 * - `engine` (default): appends of every conversation of the store share one queue (EngineCommitter,
 *   committer.ts). All calls queued while one engine transaction is in flight go into the next one,
 *   run in a single flat write transaction (one fsync for many conversations), with no child
 *   transaction per call.
 * - `writer`: group commit per writer (the earlier behaviour, kept for comparison): each call is its
 *   own child transaction; lmdb-js still merges child transactions queued in one event turn into
 *   one physical commit.
 */
export type GroupCommitMode = 'engine' | 'writer';

/** What an engine-wide committer needs from a writer; see committer.ts. */
export interface CommitQueue {
  enqueue(call: QueuedAppend): void;
}

/** One append call waiting for a commit. */
export interface QueuedAppend {
  writer: EmbeddedWriter;
  ctx: EngineContext;
  drafts: MessageDraft[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

export type CallbackOutcome = AppendOutcome | { kind: 'closed'; err: StoreError };

/**
 * The writer of one conversation. With a CommitQueue (mode `engine`) its appends go to the store's
 * engine-wide committer; without one it group-commits by itself: at most one lmdb commit is in flight
 * per writer, calls that arrive meanwhile wait and then go to lmdb together; their transaction
 * callbacks are queued in one event turn, so lmdb runs them in call order inside one synced commit,
 * each as its own child transaction (a batch that fails is rolled back alone). A lone call therefore
 * costs one fsync, and a burst costs one per group. Either way a group starts only after the previous
 * one settled, so a failed commit is known before any later call picks its seqs.
 */
export class EmbeddedWriter implements ConversationWriter {
  /** Head after every transaction callback run so far (committed or still committing). */
  headSeq: number;
  /** Highest seq whose commit resolved, or the head observed at open: what `head` reports. */
  private committedHead: number;
  /** Set once the writer is closed; every later call rejects with it. */
  failure: StoreError | null = null;
  private readonly waiting: QueuedAppend[] = [];
  private flushing = false;

  constructor(
    private readonly host: WriterHost,
    readonly conversationId: string,
    readonly epoch: number,
    head: number,
    private readonly queue: CommitQueue | null = null,
  ) {
    this.headSeq = head;
    this.committedHead = head;
  }

  get head(): number {
    return this.committedHead;
  }

  append(drafts: MessageDraft[]): Promise<AppendResult[]> {
    return this.host.run('append', (ctx) => {
      checkDrafts(drafts);
      if (this.failure) throw this.failure;
      return new Promise<AppendResult[]>((resolve, reject) => {
        const call: QueuedAppend = { writer: this, ctx, drafts, resolve, reject };
        if (this.queue !== null) return this.queue.enqueue(call);
        this.waiting.push(call);
        if (!this.flushing) void this.flush();
      });
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.waiting.length > 0) {
        const group = this.waiting.splice(0, MAX_CALLS_PER_GROUP);
        await Promise.all(group.map((call) => this.commit(call)));
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Queues one call's transaction (synchronously, so a group shares a commit) and settles the call. */
  private commit(call: QueuedAppend): Promise<void> {
    const { ctx, drafts } = call;
    // Callbacks of one group run in order inside the same commit, so `headSeq` already includes the
    // seqs that earlier calls of the group assigned.
    let txn: Promise<CallbackOutcome>;
    try {
      txn = ctx.tables.root.childTransaction((): CallbackOutcome => this.applyInTransaction(ctx, drafts, ctx.now(), SWEEP_PER_APPEND));
    } catch (err) {
      txn = Promise.reject(err); // lmdb refused to queue it (environment closed underneath us)
    }
    return txn.then(
      (out) => this.settle(call, out),
      (err: unknown) => this.commitFailed(call, err),
    );
  }

  /**
   * The call's work inside an open write transaction: checks the writer is still usable, appends,
   * and moves `headSeq` (or closes the writer on fencing). Throws only what lmdb threw, before this
   * writer's state changed.
   */
  applyInTransaction(ctx: EngineContext, drafts: MessageDraft[], now: number, sweep: number): CallbackOutcome {
    if (this.failure) return { kind: 'closed', err: this.failure };
    const out = appendInTransaction(ctx, this.conversationId, this.epoch, this.headSeq, drafts, now, sweep);
    if (out.kind === 'ok') this.headSeq = out.head;
    else if (out.kind !== 'not_found') this.failure = this.fencingError(out);
    return out;
  }

  /** Answers a call once its transaction committed (durably) with `out`. */
  settle(call: QueuedAppend, out: CallbackOutcome): void {
    switch (out.kind) {
      case 'ok':
        this.committedHead = Math.max(this.committedHead, out.head);
        return call.resolve(out.results);
      case 'not_found':
        return call.reject(new StoreError('store.not_found', `conversation ${this.conversationId} does not exist`));
      case 'closed':
        return call.reject(out.err);
      case 'stale_epoch':
      case 'conflict':
        return call.reject(this.failure ?? this.fencingError(out));
    }
  }

  /** The commit (or the call's callback) failed: seqs this writer counted are not on disk, so it closes. */
  commitFailed(call: QueuedAppend, err: unknown): void {
    this.failure ??= wrapLmdbError(err);
    call.reject(this.failure);
  }

  private fencingError(out: Extract<AppendOutcome, { kind: 'stale_epoch' | 'conflict' }>): StoreError {
    if (out.kind === 'stale_epoch') {
      return new StoreError(
        'store.stale_epoch',
        `writer epoch ${this.epoch} of ${this.conversationId} was superseded by epoch ${out.current}`,
      );
    }
    return new StoreError(
      'store.conflict',
      `seq ${out.seq} of ${this.conversationId} is already held by another writer (stored head ${out.storedHead})`,
    );
  }
}

/**
 * The whole append, run inside one write transaction. It reads and decides everything before its
 * first write and reports fencing failures as data, so a refused batch writes nothing.
 */
function appendInTransaction(
  ctx: EngineContext,
  conversationId: string,
  epoch: number,
  expectedHead: number,
  drafts: MessageDraft[],
  now: number,
  sweep: number,
): AppendOutcome {
  const { tables, bucketSize } = ctx;
  const state = tables.logs.get(conversationId);
  if (state === undefined) return { kind: 'not_found' };
  if (state.epoch !== epoch) return { kind: 'stale_epoch', current: state.epoch };
  // Another writer of the same epoch (a restarted activation) moved the head: the seq this writer
  // would assign next is taken. The scylla engine hits the same case as a failed IF NOT EXISTS.
  if (state.head !== expectedHead) return { kind: 'conflict', storedHead: state.head, seq: expectedHead + 1 };

  const results: AppendResult[] = new Array<AppendResult>(drafts.length);
  const firstInBatch = new Map<string, number>();
  const fresh: { draft: MessageDraft; seq: number }[] = [];
  let seq = state.head;
  for (let i = 0; i < drafts.length; i++) {
    const d = drafts[i]!;
    // NUL never occurs in validated ids, so it separates the two parts unambiguously.
    const batchKey = `${d.senderDevice}\u0000${d.clientMsgId}`;
    const first = firstInBatch.get(batchKey);
    if (first !== undefined) {
      results[i] = { seq: results[first]!.seq, messageId: results[first]!.messageId, duplicate: true };
      continue;
    }
    firstInBatch.set(batchKey, i);
    const original = findOriginal(ctx, state, conversationId, d, now);
    if (original) {
      results[i] = original;
      continue;
    }
    seq += 1;
    if (tables.messages.doesExist(messageKey(conversationId, seq, bucketSize))) {
      return { kind: 'conflict', storedHead: state.head, seq };
    }
    results[i] = { seq, messageId: d.messageId, duplicate: false };
    fresh.push({ draft: d, seq });
  }

  const expiresAtMs = now + ctx.idempotencyTtlMs;
  for (const { draft: d, seq: s } of fresh) {
    const row: MessageRow = {
      messageId: d.messageId,
      senderUser: d.senderUser,
      senderDevice: d.senderDevice,
      clientMsgId: d.clientMsgId,
      body: d.body,
      sentAtMs: d.sentAtMs,
    };
    // Only when present: rows without media keep the layout every earlier version wrote.
    if (d.media !== undefined && d.media.length > 0) row.media = [...d.media];
    tables.messages.put(messageKey(conversationId, s, bucketSize), row);
    const idem: IdempotencyRow = { seq: s, messageId: d.messageId, expiresAtMs };
    tables.idempotency.put(idempotencyKey(conversationId, d.senderDevice, d.clientMsgId), idem);
    tables.idempotencyExpiry.put(idempotencyExpiryKey(expiresAtMs, conversationId, d.senderDevice, d.clientMsgId), 1);
  }
  if (seq !== state.head) {
    const next: LogState = { ...state, head: seq };
    tables.logs.put(conversationId, next);
  }
  if (sweep > 0) sweepExpiredIdempotency(ctx, now, sweep);
  return { kind: 'ok', results, head: seq };
}

/**
 * The original result of an earlier append of the same (conversation, senderDevice, clientMsgId),
 * if its idempotency record is live and still describes the message stored at its seq. A record whose
 * message was removed by retention still proves the original commit.
 */
function findOriginal(
  ctx: EngineContext,
  state: LogState,
  conversationId: string,
  d: MessageDraft,
  now: number,
): AppendResult | null {
  const rec = ctx.tables.idempotency.get(idempotencyKey(conversationId, d.senderDevice, d.clientMsgId));
  if (rec === undefined || rec.expiresAtMs <= now) return null;
  const stored = ctx.tables.messages.get(messageKey(conversationId, rec.seq, ctx.bucketSize));
  if (stored === undefined) {
    return rec.seq < state.retainedFrom ? { seq: rec.seq, messageId: rec.messageId, duplicate: true } : null;
  }
  if (stored.senderDevice !== d.senderDevice || stored.clientMsgId !== d.clientMsgId) return null;
  return { seq: rec.seq, messageId: stored.messageId, duplicate: true };
}

/**
 * Removes up to `max` expired idempotency records, oldest expiry first. A record rewritten after its
 * expiry (same key appended again) has a newer expiry than the index entry being swept and is kept.
 */
export function sweepExpiredIdempotency(ctx: EngineContext, now: number, max: number): number {
  const { idempotency, idempotencyExpiry } = ctx.tables;
  // Collect first: the cursor must not walk keys this loop is deleting.
  const due = [...idempotencyExpiry.getKeys({ end: [now], limit: max })];
  for (const key of due) {
    idempotencyExpiry.remove(key);
    if (!Array.isArray(key) || key.length !== 4) continue;
    const [expiresAtMs, conversationId, senderDevice, clientMsgId] = key as [number, string, string, string];
    const primary = idempotencyKey(conversationId, senderDevice, clientMsgId);
    if (idempotency.get(primary)?.expiresAtMs === expiresAtMs) idempotency.remove(primary);
  }
  return due.length;
}

/**
 * Claims the writer role for `epoch`: raises the stored epoch (fencing every older writer from its
 * next append on) and returns a writer at the authoritative head. The same epoch again is allowed.
 */
export async function openWriter(
  ctx: EngineContext,
  host: WriterHost,
  conversationId: string,
  epoch: number,
  queue: CommitQueue | null = null,
): Promise<EmbeddedWriter> {
  const outcome = await ctx.tables.root.childTransaction(() => {
    const state = ctx.tables.logs.get(conversationId);
    if (state === undefined) return { kind: 'not_found' as const };
    if (epoch < state.epoch) return { kind: 'stale_epoch' as const, current: state.epoch };
    if (epoch > state.epoch) {
      const next: LogState = { ...state, epoch };
      ctx.tables.logs.put(conversationId, next);
    }
    return { kind: 'ok' as const, head: state.head };
  });
  switch (outcome.kind) {
    case 'not_found':
      throw new StoreError('store.not_found', `conversation ${conversationId} does not exist`);
    case 'stale_epoch':
      throw new StoreError(
        'store.stale_epoch',
        `cannot open ${conversationId} with epoch ${epoch}: epoch ${outcome.current} already owns it`,
      );
    case 'ok':
      return new EmbeddedWriter(host, conversationId, epoch, outcome.head, queue);
  }
}
