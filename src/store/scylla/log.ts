import { StoreError } from '../errors.js';
import type { StoredMessage } from '../types.js';
import { mapLimit, type Row, type Session } from './session.js';
import { ms, num, numOr, str } from './values.js';

/**
 * Static epoch of a bucket removed by retention. It is above every writer epoch, so a retired bucket
 * rejects every fenced batch for ever: a writer paused for days cannot refill a trimmed bucket. Writer
 * epochs must stay below it (checked at openWriter).
 */
export const RETIRED_EPOCH = Number.MAX_SAFE_INTEGER;

/** Buckets read at once by one range read. */
const READ_FANOUT = 8;

export type RaiseOutcome = 'ok' | 'stale' | 'retired';

export interface Pointers {
  /** conv_heads: at least every acknowledged seq, possibly behind unacknowledged commits. */
  hint: number;
  retainedFrom: number;
}

/**
 * The message log of all conversations: bucket arithmetic, epoch raising and the authoritative head.
 * Seq s lives in bucket floor(s / bucketSize); seq 0 never exists. Seqs are dense, so a bucket is full
 * exactly when it holds its last seq, and no bucket after a non-full one holds anything.
 */
export class MessageLog {
  constructor(private readonly s: Session) {}

  bucketOf(seq: number): number {
    return Math.floor(seq / this.s.bucketSize);
  }
  firstSeqOf(bucket: number): number {
    return Math.max(1, bucket * this.s.bucketSize);
  }
  lastSeqOf(bucket: number): number {
    return (bucket + 1) * this.s.bucketSize - 1;
  }

  async pointers(conv: string): Promise<Pointers> {
    const [h, r] = await Promise.all([
      this.s.readOne(this.s.cql.selectHead, [conv]),
      this.s.readOne(this.s.cql.selectRetention, [conv]),
    ]);
    return { hint: numOr(h?.get('head'), 0), retainedFrom: Math.max(1, numOr(r?.get('retained_from'), 1)) };
  }

  async retainedFrom(conv: string): Promise<number> {
    const r = await this.s.readOne(this.s.cql.selectRetention, [conv]);
    return Math.max(1, numOr(r?.get('retained_from'), 1));
  }

  async conversationEpoch(conv: string): Promise<number | null> {
    const row = await this.s.readOne(this.s.cql.selectConversationEpoch, [conv], true);
    return num(row?.get('epoch'));
  }

  /**
   * Raises a bucket's static epoch to `epoch` by LWT. `IF epoch < ?` is false when the partition has
   * no epoch yet, so that case takes `IF epoch = null`; `claimFirst` starts with that form (for a
   * bucket that is expected to be new). Equal counts as raised.
   */
  async raise(conv: string, bucket: number, epoch: number, claimFirst = false): Promise<RaiseOutcome> {
    let claim = claimFirst;
    for (let attempt = 0; attempt < 6; attempt++) {
      const rs = claim
        ? await this.s.lwt(this.s.cql.claimBucketEpoch, [epoch, conv, bucket])
        : await this.s.lwt(this.s.cql.raiseBucketEpoch, [epoch, conv, bucket, epoch]);
      if (rs.wasApplied()) return 'ok';
      // Not applied: Cassandra and ScyllaDB both return the current value of the condition column.
      const current = num(rs.first()?.get('epoch'));
      if (current === null) {
        claim = true;
        continue;
      }
      claim = false;
      if (current === RETIRED_EPOCH && epoch !== RETIRED_EPOCH) return 'retired';
      if (current > epoch) return 'stale';
      if (current === epoch) return 'ok';
      // current < epoch: someone claimed it meanwhile; raise over it.
    }
    throw new StoreError('store.internal', `could not raise the epoch of ${conv} bucket ${bucket}`);
  }

  /** Highest seq in a bucket (null when it holds no rows) and the bucket's static epoch. */
  async top(conv: string, bucket: number, serial: boolean): Promise<{ seq: number | null; epoch: number | null }> {
    const row = await this.s.readOne(this.s.cql.bucketTop, [conv, bucket], serial);
    return { seq: num(row?.get('seq')), epoch: num(row?.get('epoch')) };
  }

  /** The authoritative head: the hint (or retention's floor) then forward over full buckets. */
  async head(conv: string): Promise<{ head: number } & Pointers> {
    const p = await this.pointers(conv);
    const { head } = await this.scan(conv, Math.max(p.hint, p.retainedFrom - 1), null, false);
    return { head, ...p };
  }

  /**
   * Walks forward from a seq known to be committed (or retained) to the authoritative head. With
   * `fence`, every bucket is raised to that epoch BEFORE it is read, so no older writer can add to a
   * bucket after we looked at it; the walk ends on the first non-full bucket, which is therefore
   * raised too and is where the next seq goes. Retired buckets were full; they are stepped over.
   */
  async scan(
    conv: string,
    from: number,
    fence: number | null,
    serial: boolean,
  ): Promise<{ head: number; bucket: number }> {
    let head = from;
    // `from` is committed (or below retention), so its bucket is done when it is the bucket's last seq.
    let bucket = this.bucketOf(from + 1);
    for (;;) {
      if (fence !== null) {
        const outcome = await this.raise(conv, bucket, fence);
        if (outcome === 'stale') throw staleEpoch(conv, fence);
        if (outcome === 'retired') {
          head = Math.max(head, this.lastSeqOf(bucket++));
          continue;
        }
      }
      const top = await this.top(conv, bucket, serial);
      if (top.epoch === RETIRED_EPOCH) {
        head = Math.max(head, this.lastSeqOf(bucket++));
        continue;
      }
      if (top.seq === null) return { head, bucket };
      head = Math.max(head, top.seq);
      if (top.seq < this.lastSeqOf(bucket)) return { head, bucket };
      bucket++;
    }
  }

  /** Messages lo..hi inclusive (both within the retained, committed range), in the given order. */
  async readRange(conv: string, lo: number, hi: number, descending: boolean): Promise<StoredMessage[]> {
    if (lo > hi) return [];
    const buckets: number[] = [];
    for (let b = this.bucketOf(lo); b <= this.bucketOf(hi); b++) buckets.push(b);
    if (descending) buckets.reverse();
    const query = descending ? this.s.cql.rangeDesc : this.s.cql.rangeAsc;
    const pages = await mapLimit(buckets, READ_FANOUT, (b) =>
      this.s.read(query, [conv, b, Math.max(lo, this.firstSeqOf(b)), Math.min(hi, this.lastSeqOf(b))]),
    );
    return pages.flat().map((row) => toMessage(conv, row));
  }

  /** The hint only moves up: its write timestamp is the head itself (see cql.ts). */
  async writeHint(conv: string, head: number): Promise<void> {
    await this.s.write(this.s.cql.writeHead, [head, head, conv]);
  }
}

export function staleEpoch(conv: string, epoch: number): StoreError {
  return new StoreError('store.stale_epoch', `epoch ${epoch} of ${conv} was superseded by a newer writer`);
}

function toMessage(conversationId: string, row: Row): StoredMessage {
  const body = row.get('body') as Buffer | null;
  const media = row.get('media') as string[] | null | undefined;
  const m: StoredMessage = {
    conversationId,
    seq: num(row.get('seq')) ?? 0,
    messageId: str(row.get('message_id')),
    senderUser: str(row.get('sender_user')),
    senderDevice: str(row.get('sender_device')),
    clientMsgId: str(row.get('client_msg_id')),
    body: body ?? new Uint8Array(0),
    sentAtMs: ms(row.get('sent_at')),
  };
  if (Array.isArray(media) && media.length > 0) m.media = media.map(String);
  return m;
}
