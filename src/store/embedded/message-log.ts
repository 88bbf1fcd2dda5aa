/**
 * Reads and retention over the message table. Reads take one lmdb read snapshot, so a page's head,
 * retainedFrom and messages are consistent with each other.
 */
import type { Transaction } from 'lmdb';
import type { Page, StoredMessage } from '../types.js';
import { bucketEnd, bucketOf, bucketStart, messageKey } from './keys.js';
import { NEW_LOG_STATE, toStoredMessage, type LogState, type MessageRow } from './records.js';
import type { EngineContext } from './tables.js';

/** Seqs removed per retention transaction, so a large backlog never holds the write lock for long. */
const TRIM_SEQS_PER_TXN = 10_000;

function withSnapshot<T>(ctx: EngineContext, fn: (txn: Transaction) => T): T {
  const txn = ctx.tables.root.useReadTransaction();
  try {
    return fn(txn);
  } finally {
    txn.done();
  }
}

export function readLogState(ctx: EngineContext, conversationId: string): LogState {
  return ctx.tables.logs.get(conversationId) ?? NEW_LOG_STATE;
}

/** Messages with seq in [low, high], ascending or descending, from one snapshot. */
function scan(
  ctx: EngineContext,
  txn: Transaction,
  conversationId: string,
  low: number,
  high: number,
  reverse: boolean,
): StoredMessage[] {
  const { messages } = ctx.tables;
  const lowKey = messageKey(conversationId, low, ctx.bucketSize);
  const highKey = messageKey(conversationId, high, ctx.bucketSize);
  const out: StoredMessage[] = [];
  const range = messages.getRange({
    start: reverse ? highKey : lowKey,
    end: reverse ? lowKey : highKey,
    inclusiveEnd: true,
    reverse,
    transaction: txn,
  });
  for (const { key, value } of range) {
    out.push(toStoredMessage(conversationId, (key as [string, number, number])[2], value as MessageRow));
  }
  return out;
}

export function readForward(ctx: EngineContext, conversationId: string, afterSeq: number, limit: number): Page {
  return withSnapshot(ctx, (txn) => {
    const state = ctx.tables.logs.get(conversationId, { transaction: txn }) ?? NEW_LOG_STATE;
    const { head, retainedFrom } = state;
    const expired = afterSeq + 1 < retainedFrom;
    const from = Math.max(afterSeq + 1, retainedFrom);
    if (from > head) return { messages: [], next: null, head, retainedFrom, expired };
    const to = Math.min(head, from + limit - 1);
    const messages = scan(ctx, txn, conversationId, from, to, false);
    // Seqs are dense, so the scanned range tells whether more follow, even if a row were missing.
    return { messages, next: to < head ? to : null, head, retainedFrom, expired };
  });
}

/**
 * Backward page. The caller asked for the `limit` seqs just below min(beforeSeq, head + 1); `expired`
 * is true when that range reaches below `retainedFrom`, i.e. some of those seqs were trimmed.
 */
export function readBackward(ctx: EngineContext, conversationId: string, beforeSeq: number, limit: number): Page {
  return withSnapshot(ctx, (txn) => {
    const state = ctx.tables.logs.get(conversationId, { transaction: txn }) ?? NEW_LOG_STATE;
    const { head, retainedFrom } = state;
    const top = Math.min(beforeSeq - 1, head);
    if (top < 1) return { messages: [], next: null, head, retainedFrom, expired: false };
    const wantedLow = Math.max(1, top - limit + 1);
    const expired = wantedLow < retainedFrom;
    const low = Math.max(wantedLow, retainedFrom);
    if (low > top) return { messages: [], next: null, head, retainedFrom, expired };
    const messages = scan(ctx, txn, conversationId, low, top, true);
    return { messages, next: low > retainedFrom ? low : null, head, retainedFrom, expired };
  });
}

/**
 * Removes whole buckets, oldest first, while the newest (highest-seq) message of the bucket was sent
 * before `olderThanMs`; never the bucket that holds the head. Runs in bounded transactions and
 * re-reads the log state in each, so it interleaves safely with a writer (which only ever writes at
 * or above the head's bucket). Returns the new retainedFrom.
 */
export async function trimExpired(ctx: EngineContext, conversationId: string, olderThanMs: number): Promise<number> {
  for (;;) {
    const step = await ctx.tables.root.childTransaction(() => trimStep(ctx, conversationId, olderThanMs));
    if (step.done) return step.retainedFrom;
  }
}

function trimStep(ctx: EngineContext, conversationId: string, olderThanMs: number): { done: boolean; retainedFrom: number } {
  const { logs, messages } = ctx.tables;
  const size = ctx.bucketSize;
  const state = logs.get(conversationId);
  if (state === undefined) return { done: true, retainedFrom: NEW_LOG_STATE.retainedFrom };
  const headBucket = bucketOf(state.head, size);
  let bucket = bucketOf(state.retainedFrom, size);
  let removed = 0;
  let done = false;
  while (removed < TRIM_SEQS_PER_TXN) {
    if (bucket >= headBucket || !bucketExpired(ctx, conversationId, bucket, olderThanMs)) {
      done = true;
      break;
    }
    // Seqs are dense, so the bucket's keys are known without walking a cursor while deleting.
    for (let s = bucketStart(bucket, size); s <= bucketEnd(bucket, size); s++) {
      messages.remove(messageKey(conversationId, s, size));
      removed++;
    }
    bucket++;
  }
  const retainedFrom = Math.max(state.retainedFrom, bucketStart(bucket, size));
  if (retainedFrom !== state.retainedFrom) logs.put(conversationId, { ...state, retainedFrom });
  return { done, retainedFrom };
}

function bucketExpired(ctx: EngineContext, conversationId: string, bucket: number, olderThanMs: number): boolean {
  const size = ctx.bucketSize;
  const last = ctx.tables.messages.get(messageKey(conversationId, bucketEnd(bucket, size), size));
  if (last !== undefined) return last.sentAtMs < olderThanMs;
  // Not dense after all (should not happen): fall back to the bucket's highest stored seq.
  for (const { value } of ctx.tables.messages.getRange({
    start: messageKey(conversationId, bucketEnd(bucket, size), size),
    end: messageKey(conversationId, bucketStart(bucket, size), size),
    inclusiveEnd: true,
    reverse: true,
    limit: 1,
  })) {
    return (value as MessageRow).sentAtMs < olderThanMs;
  }
  return true; // an empty bucket holds nothing to keep
}
