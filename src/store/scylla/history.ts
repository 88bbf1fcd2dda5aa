import type { Page } from '../types.js';
import { RETIRED_EPOCH, type MessageLog } from './log.js';
import type { Session } from './session.js';
import { ms, requireId, requireLimit, requireMs, requireSeq } from './values.js';

/**
 * Reading and trimming the log. Reads use the read consistency: with read and write consistency
 * levels that overlap (e.g. localQuorum for both) the head they report is the authoritative one.
 */
export class History {
  constructor(
    private readonly s: Session,
    private readonly log: MessageLog,
  ) {}

  /** Seqs afterSeq+1 .. head, from retainedFrom at the lowest; dense seqs let us name the buckets. */
  async readForward(conv: string, afterSeq: number, limit: number): Promise<Page> {
    requireId('conversationId', conv);
    requireSeq('afterSeq', afterSeq);
    requireLimit(limit);
    const { head, retainedFrom } = await this.log.head(conv);
    const lo = Math.max(afterSeq + 1, retainedFrom);
    const hi = Math.min(head, lo + limit - 1);
    const messages = await this.log.readRange(conv, lo, hi, false);
    const last = messages[messages.length - 1];
    return {
      messages,
      next: last && last.seq < head ? last.seq : null,
      head,
      retainedFrom,
      expired: afterSeq + 1 < retainedFrom,
    };
  }

  /**
   * Seqs below beforeSeq, newest first. `expired` when the `limit` messages asked for reach below
   * retainedFrom (part of the page was trimmed); `next` is null once nothing retained is left below.
   */
  async readBackward(conv: string, beforeSeq: number, limit: number): Promise<Page> {
    requireId('conversationId', conv);
    requireSeq('beforeSeq', beforeSeq);
    requireLimit(limit);
    const { head, retainedFrom } = await this.log.head(conv);
    const hi = Math.min(head, beforeSeq - 1);
    const wantedLo = Math.max(1, hi - limit + 1);
    const lo = Math.max(wantedLo, retainedFrom);
    const messages = await this.log.readRange(conv, lo, hi, true);
    const last = messages[messages.length - 1];
    return {
      messages,
      next: last && last.seq > retainedFrom ? last.seq : null,
      head,
      retainedFrom,
      expired: hi >= 1 && wantedLo < retainedFrom,
    };
  }

  async retainedFrom(conv: string): Promise<number> {
    requireId('conversationId', conv);
    return this.log.retainedFrom(conv);
  }

  async head(conv: string): Promise<number> {
    requireId('conversationId', conv);
    return (await this.log.head(conv)).head;
  }

  /**
   * Removes whole buckets, oldest first, while the newest message of each (max sent_at) is older
   * than `olderThanMs`, never the head's bucket nor any later one. Order matters:
   * 1. retention moves first (monotonic write), so readers report `expired` before rows disappear;
   * 2. each bucket is RETIRED by LWT (its static epoch goes above every writer epoch), so a paused
   *    stale writer whose head lies in it cannot refill it once its rows are gone;
   * 3. then a range tombstone removes the rows (the static epoch stays).
   * A trim that died between 1 and 3 is finished by the next one: buckets just below retention that
   * are not retired yet are retired and emptied.
   */
  async trimExpired(conv: string, olderThanMs: number): Promise<number> {
    requireId('conversationId', conv);
    requireMs('olderThanMs', olderThanMs);
    const { head, retainedFrom } = await this.log.head(conv);
    if (head === 0) return retainedFrom;

    let lowest = this.log.bucketOf(retainedFrom);
    while (lowest > this.log.bucketOf(1) && (await this.log.top(conv, lowest - 1, false)).epoch !== RETIRED_EPOCH) lowest--;

    const headBucket = this.log.bucketOf(head);
    let end = this.log.bucketOf(retainedFrom);
    while (end < headBucket) {
      const row = await this.s.readOne(this.s.cql.bucketNewestSentAt, [conv, end]);
      const newest = row?.get('newest');
      if (newest === null || newest === undefined || ms(newest) >= olderThanMs) break;
      end++;
    }
    const trimmedTo = end > this.log.bucketOf(retainedFrom) ? this.log.firstSeqOf(end) : retainedFrom;
    if (trimmedTo > retainedFrom) await this.s.write(this.s.cql.writeRetention, [trimmedTo, trimmedTo, conv]);

    for (let b = lowest; b < end; b++) {
      await this.log.raise(conv, b, RETIRED_EPOCH);
      await this.s.write(this.s.cql.deleteBucketRows, [conv, b, this.log.firstSeqOf(b), this.log.lastSeqOf(b)]);
    }
    return Math.max(trimmedTo, retainedFrom);
  }
}
