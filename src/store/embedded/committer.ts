/**
 * Engine-wide group commit for the embedded engine (store.embedded.groupCommit = engine).
 *
 * Why: a conversation has at most one append in flight (the conversation actor and the writer both
 * serialize), so in 1:1 traffic spread over many conversations a per-writer group is one message.
 * Here every writer of the store shares one queue. At most one engine transaction is in flight; the
 * calls of all conversations that queued meanwhile go into the next one together:
 *
 * - The group is taken when lmdb runs the transaction callback, not when it was requested, so it holds
 *   everything queued up to the moment the write transaction is ready.
 * - The callback appends every call in queue order inside ONE nested transaction (no child
 *   transaction per call, one idempotency sweep per group) and the group is acked only when lmdb's
 *   commit promise resolves, i.e. after the fsync (overlappingSync is off, see tables.ts).
 * - Pipelining is possible (MAX_TXNS_IN_FLIGHT = 2: while one transaction commits, the next is
 *   already requested, so lmdb starts it as soon as the commit is done) but off: it measured worse
 *   (see the constant). At most one requested transaction has not run its callback yet; it takes the
 *   whole queue when it runs.
 * - Guarantees per conversation are unchanged: each call is fenced by its own writer's epoch and
 *   expected head (EmbeddedWriter.applyInTransaction), a fenced-out or conflicting call writes nothing
 *   and closes only its own writer (callbacks run in order, so a later group sees it closed). Acks
 *   follow lmdb's commit order. If a commit itself fails, its writes are rolled back and a later
 *   transaction that already ran finds the stored head behind its writer's expected head: that call
 *   fails with store.conflict and writes nothing, so no seq is ever acked on top of a lost commit.
 * - Isolation when lmdb itself throws (not expected: drafts are validated before they queue): the flat
 *   attempt is rolled back as a whole, every writer's in-memory head is restored, and the group is
 *   re-run in the same transaction with one child transaction per call, so only the call that throws
 *   fails (and closes its writer); the others commit.
 * - A failed commit (I/O error) fails every call of the group, as it would each call's own commit:
 *   nothing of it was acked.
 */
import { Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import { wrapLmdbError } from './lmdb-errors.js';
import type { EngineContext } from './tables.js';
import { sweepExpiredIdempotency, SWEEP_PER_APPEND, type CallbackOutcome, type CommitQueue, type QueuedAppend } from './writer.js';

/** Most append calls in one engine transaction; bounds how long the write lock is held. */
export const MAX_CALLS_PER_ENGINE_GROUP = 1024;

/**
 * Engine transactions requested at once. 2 pipelines them (one committing, one collecting the next
 * group). Measured with bench/delivery at 4,500 msgs/s (bench/RESULTS.md, session 2): 2 made groups
 * smaller (about 8 appends per transaction instead of 12) and cost about 8% more node CPU per
 * message for about 1 ms lower median latency, so throughput wins: 1.
 */
const MAX_TXNS_IN_FLIGHT = 1;

const groupSize = new Histogram({
  name: 'ticks_store_group_commit_size',
  help: 'Append calls (conversation group commits) carried by one engine-wide transaction of the embedded store.',
  labelNames: ['engine'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  registers: [registry],
});

type Outcome = { kind: 'done'; out: CallbackOutcome } | { kind: 'threw'; err: unknown };

export class EngineCommitter implements CommitQueue {
  private readonly waiting: QueuedAppend[] = [];
  /** Transactions requested whose commit has not settled yet. */
  private inflight = 0;
  /** A requested transaction whose callback has not run: it will take what is queued by then. */
  private collecting = false;

  constructor(
    private readonly ctx: EngineContext,
    private readonly maxCalls = MAX_CALLS_PER_ENGINE_GROUP,
  ) {}

  enqueue(call: QueuedAppend): void {
    this.waiting.push(call);
    this.maybeRequest();
  }

  private maybeRequest(): void {
    if (this.waiting.length > 0 && !this.collecting && this.inflight < MAX_TXNS_IN_FLIGHT) this.request();
  }

  /** Requests the next engine transaction; its callback takes whatever is queued by then. */
  private request(): void {
    this.collecting = true;
    this.inflight++;
    let group: QueuedAppend[] | null = null;
    let outcomes: Outcome[] = [];
    let txn: Promise<unknown>;
    try {
      txn = this.ctx.tables.root.transaction(() => {
        this.collecting = false;
        group = this.waiting.splice(0, this.maxCalls);
        outcomes = this.apply(group);
        // Never request from inside the callback: lmdb would queue it into the batch running now.
        // Calls left queued (more than one group takes) are picked up when this one settles or
        // by the next enqueue.
      });
    } catch (err) {
      txn = Promise.reject(err); // lmdb refused to queue it (environment closed underneath us)
    }
    txn.then(
      () => {
        // A callback that never ran (no group) cannot have written anything: nothing to settle.
        const calls = group ?? [];
        calls.forEach((call, i) => {
          const o = outcomes[i]!;
          if (o.kind === 'done') call.writer.settle(call, o.out);
          else call.writer.commitFailed(call, o.err);
        });
        this.settled(group === null);
      },
      (err: unknown) => {
        for (const call of group ?? this.waiting.splice(0)) call.writer.commitFailed(call, err);
        this.settled(group === null);
      },
    );
  }

  private settled(callbackSkipped: boolean): void {
    this.inflight--;
    if (callbackSkipped) this.collecting = false;
    this.maybeRequest();
  }

  /** Runs inside lmdb's write transaction: the flat attempt, or per-call isolation if lmdb threw. */
  private apply(group: QueuedAppend[]): Outcome[] {
    const { ctx } = this;
    if (group.length === 0) return [];
    groupSize.observe({ engine: 'embedded' }, group.length);
    const now = ctx.now();
    let drafts = 0;
    for (const c of group) drafts += c.drafts.length;
    const sweep = SWEEP_PER_APPEND + drafts;
    const saved = group.map((c) => ({ head: c.writer.headSeq, failure: c.writer.failure }));
    try {
      return ctx.tables.root.childTransaction(() => {
        const out = group.map((c): Outcome => ({ kind: 'done', out: c.writer.applyInTransaction(ctx, c.drafts, now, 0) }));
        sweepExpiredIdempotency(ctx, now, sweep);
        return out;
      }) as unknown as Outcome[];
    } catch {
      // Rolled back as a whole by lmdb. Restore in reverse, so a writer with several calls in the
      // group gets the state from before its first one.
      for (let i = group.length - 1; i >= 0; i--) {
        group[i]!.writer.headSeq = saved[i]!.head;
        group[i]!.writer.failure = saved[i]!.failure;
      }
    }
    return group.map((c): Outcome => {
      try {
        const out = ctx.tables.root.childTransaction(() => c.writer.applyInTransaction(ctx, c.drafts, now, 0)) as unknown as CallbackOutcome;
        return { kind: 'done', out };
      } catch (err) {
        // This call's own failure: its writer closes before any later call of it in the group runs.
        c.writer.failure ??= wrapLmdbError(err);
        return { kind: 'threw', err };
      }
    });
  }
}
