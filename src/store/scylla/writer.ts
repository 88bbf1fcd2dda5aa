import cassandra from 'cassandra-driver';
import { StoreError } from '../errors.js';
import { instrument } from '../metrics.js';
import type { ConversationWriter } from '../store.js';
import type { AppendResult, MessageDraft } from '../types.js';
import { wrapDriverError } from './errors.js';
import { RETIRED_EPOCH, staleEpoch, type MessageLog } from './log.js';
import { mapLimit, type Session, type Stmt } from './session.js';
import { invalid, MAX_MEDIA_PER_MESSAGE, num, requireId, requireMs, toBuffer } from './values.js';

const { types } = cassandra;

/** Keys per IN list: ScyllaDB caps clustering-key restrictions per query at 100 by default. */
const IN_CHUNK = 100;

interface Fresh {
  index: number;
  seq: number;
  draft: MessageDraft;
}

type Verdict = 'stale' | 'conflict' | 'unfenced' | 'retry';

/**
 * The fenced single writer of one conversation (see ConversationWriter in store.ts).
 *
 * One append: (1) look up the drafts' idempotency keys and verify hits against the stored rows;
 * (2) write reservations (key -> seq) with a TTL; (3) per bucket, in seq order, one conditional batch
 * `UPDATE .. SET epoch = mine IF epoch = mine` + `INSERT .. IF NOT EXISTS` per message; (4) raise the
 * head hint. A reservation whose batch never committed is dangling: the row at its seq is missing or
 * belongs to another message, so it is ignored and overwritten on the next use of the key.
 */
export class ScyllaWriter implements ConversationWriter {
  private committedHead: number;
  /** Highest head known to be in conv_heads; the hint is raised before an append resolves. */
  private hintAt: number;
  /** Highest bucket known to carry this writer's epoch. */
  private raisedBucket: number;
  private failure: StoreError | null = null;
  /** A batch timed out: its outcome is unknown until the head is re-read. */
  private uncertain = false;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly s: Session,
    private readonly log: MessageLog,
    readonly conversationId: string,
    readonly epoch: number,
    opened: { head: number; hint: number; bucket: number },
  ) {
    this.committedHead = opened.head;
    this.hintAt = opened.hint;
    this.raisedBucket = opened.bucket;
  }

  get head(): number {
    return this.committedHead;
  }

  append(drafts: MessageDraft[]): Promise<AppendResult[]> {
    // `tail` never rejects, so each call starts when the previous one settled, whatever its outcome.
    const run = this.tail.then(() => instrument('scylla', 'append', wrapDriverError, () => this.appendNow(drafts)));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Writes the hint when it is behind; openWriter uses this too. */
  async publishHead(): Promise<void> {
    if (this.committedHead <= this.hintAt) return;
    await this.log.writeHint(this.conversationId, this.committedHead);
    this.hintAt = Math.max(this.hintAt, this.committedHead);
  }

  private async appendNow(drafts: MessageDraft[]): Promise<AppendResult[]> {
    this.s.assertOpen();
    if (this.failure) throw new StoreError(this.failure.code, this.failure.message, this.failure);
    validate(drafts);
    if (this.uncertain) {
      this.committedHead = (await this.log.scan(this.conversationId, this.committedHead, null, true)).head;
      this.uncertain = false;
    }
    const keys = drafts.map((d) => keyOf(d.senderDevice, d.clientMsgId));
    const first = new Map<string, number>();
    keys.forEach((k, i) => first.has(k) || first.set(k, i));
    const known = await this.replays(drafts, first);

    const results: AppendResult[] = [];
    const fresh: Fresh[] = [];
    let next = this.committedHead + 1;
    drafts.forEach((draft, index) => {
      const key = keys[index] as string;
      const firstIndex = first.get(key) as number;
      const prior = known.get(key) ?? (firstIndex < index ? results[firstIndex] : undefined);
      if (prior) {
        results.push({ seq: prior.seq, messageId: prior.messageId, duplicate: true });
        return;
      }
      const seq = next++;
      fresh.push({ index, seq, draft });
      results.push({ seq, messageId: draft.messageId, duplicate: false });
    });
    if (fresh.length > 0) {
      const headBefore = this.committedHead;
      await this.reserve(fresh);
      for (const chunk of byBucket(fresh, (seq) => this.log.bucketOf(seq))) {
        try {
          await this.commit(chunk);
        } catch (err) {
          throw await this.failed(err, this.committedHead > headBefore ? results.slice(0, (chunk[0] as Fresh).index) : null);
        }
        this.committedHead = (chunk[chunk.length - 1] as Fresh).seq;
      }
    }
    await this.publishHead();
    return results;
  }

  /** Earlier appends of these keys whose message row is really there (or was trimmed since). */
  private async replays(drafts: MessageDraft[], first: Map<string, number>): Promise<Map<string, AppendResult>> {
    const known = new Map<string, AppendResult>();
    const tuples = [...first.values()].map((i) => {
      const d = drafts[i] as MessageDraft;
      return new types.Tuple(d.senderDevice, d.clientMsgId);
    });
    const rows = (
      await mapLimit(chunks(tuples, IN_CHUNK), 4, (part) =>
        this.s.read(this.s.cql.selectIdempotency, [this.conversationId, part]),
      )
    ).flat();
    if (rows.length === 0) return known;

    const hits = rows.map((r) => ({
      key: keyOf(r.get('sender_device'), r.get('client_msg_id')),
      seq: num(r.get('seq')) ?? 0,
      messageId: r.get('message_id') as string,
    }));
    const bySeq = new Map<number, { device: string; clientMsgId: string; messageId: string }>();
    const buckets = new Map<number, number[]>();
    for (const h of hits) {
      const b = this.log.bucketOf(h.seq);
      buckets.set(b, [...(buckets.get(b) ?? []), h.seq]);
    }
    // Serial reads: a row committed by a batch that timed out must be seen, or it would be duplicated.
    await mapLimit([...buckets], 4, async ([b, seqs]) => {
      for (const part of chunks(seqs, IN_CHUNK)) {
        for (const r of await this.s.read(this.s.cql.messagesAt, [this.conversationId, b, part], true)) {
          bySeq.set(num(r.get('seq')) ?? 0, {
            device: r.get('sender_device'),
            clientMsgId: r.get('client_msg_id'),
            messageId: r.get('message_id'),
          });
        }
      }
    });
    let retainedFrom: number | null = null;
    for (const h of hits) {
      const row = bySeq.get(h.seq);
      if (row) {
        if (keyOf(row.device, row.clientMsgId) === h.key) known.set(h.key, { seq: h.seq, messageId: row.messageId, duplicate: true });
        continue;
      }
      // No row: either the reservation dangles (its batch never committed) or retention removed the
      // message. Only the latter is below retainedFrom.
      retainedFrom ??= await this.log.retainedFrom(this.conversationId);
      if (h.seq < retainedFrom) known.set(h.key, { seq: h.seq, messageId: h.messageId, duplicate: true });
    }
    return known;
  }

  /** Reservations go in before the messages, so a committed message always has its key recorded. */
  private async reserve(fresh: Fresh[]): Promise<void> {
    const stmts: Stmt[] = fresh.map(({ seq, draft }) => ({
      query: this.s.cql.insertIdempotency,
      params: [this.conversationId, draft.senderDevice, draft.clientMsgId, seq, draft.messageId, this.s.ttlSeconds],
    }));
    await this.s.batch(stmts); // one partition: a single atomic mutation
  }

  /** One fenced conditional batch for one bucket; diagnoses and retries a rejection at most twice. */
  private async commit(chunk: Fresh[]): Promise<void> {
    const conv = this.conversationId;
    const bucket = this.log.bucketOf((chunk[0] as Fresh).seq);
    if (bucket > this.raisedBucket) await this.raise(bucket, true);
    const stmts: Stmt[] = [
      { query: this.s.cql.fenceBucket, params: [this.epoch, conv, bucket, this.epoch] },
      ...chunk.map(({ seq, draft: d }) => ({
        query: this.s.cql.insertMessage,
        // undefined = unset (the driver's useUndefinedAsUnset): no cell, no tombstone, for messages without media.
        params: [conv, bucket, seq, d.messageId, d.senderUser, d.senderDevice, d.clientMsgId, toBuffer(d.body), new Date(d.sentAtMs), d.media?.length ? d.media : undefined],
      })),
    ];
    for (let attempt = 0; attempt < 3; attempt++) {
      if ((await this.s.batch(stmts)).wasApplied()) return;
      const verdict = await this.diagnose(bucket, chunk.map((f) => f.seq));
      if (verdict === 'stale') throw staleEpoch(conv, this.epoch);
      if (verdict === 'conflict') throw conflict(conv, chunk);
      if (verdict === 'unfenced') await this.raise(bucket, false);
    }
    throw new StoreError('store.internal', `fenced batch for ${conv} bucket ${bucket} kept being rejected`);
  }

  private async raise(bucket: number, claimFirst: boolean): Promise<void> {
    const outcome = await this.log.raise(this.conversationId, bucket, this.epoch, claimFirst);
    if (outcome === 'stale') throw staleEpoch(this.conversationId, this.epoch);
    if (outcome === 'retired') {
      // Only a writer left behind by a newer one can reach a trimmed bucket.
      const current = await this.log.conversationEpoch(this.conversationId);
      if (current !== null && current > this.epoch) throw staleEpoch(this.conversationId, this.epoch);
      throw new StoreError('store.conflict', `${this.conversationId} bucket ${bucket} was removed by retention`);
    }
    this.raisedBucket = Math.max(this.raisedBucket, bucket);
  }

  /**
   * Why a fenced batch was rejected, from linearized (serial) reads. A newer conversation epoch means
   * stale even when the bucket itself still carries ours: a writer that fell behind a newer writer's
   * starting bucket meets existing rows, not a raised epoch.
   */
  private async diagnose(bucket: number, seqs: number[]): Promise<Verdict> {
    const conv = this.conversationId;
    const [top, existing, convEpoch] = await Promise.all([
      this.log.top(conv, bucket, true),
      mapLimit(chunks(seqs, IN_CHUNK), 4, (part) => this.s.read(this.s.cql.existingSeqs, [conv, bucket, part], true)),
      this.log.conversationEpoch(conv),
    ]);
    if (convEpoch !== null && convEpoch > this.epoch) return 'stale';
    if (top.epoch === RETIRED_EPOCH) return 'conflict';
    if (top.epoch !== null && top.epoch > this.epoch) return 'stale';
    if (existing.some((rows) => rows.length > 0)) return 'conflict';
    if (top.epoch === null || top.epoch < this.epoch) return 'unfenced';
    return 'retry';
  }

  /** Closes the writer on stale/conflict; reports a committed prefix only once the hint covers it. */
  private async failed(err: unknown, committed: AppendResult[] | null): Promise<StoreError> {
    const e = wrapDriverError(err);
    if (e.code === 'store.stale_epoch' || e.code === 'store.conflict') this.failure = e;
    else this.uncertain = true;
    if (committed) {
      try {
        await this.publishHead();
      } catch {
        return e; // no `committed`: the caller retries and gets the prefix back as replays
      }
      e.committed = committed;
    }
    return e;
  }
}

function conflict(conv: string, chunk: Fresh[]): StoreError {
  const first = (chunk[0] as Fresh).seq;
  const last = (chunk[chunk.length - 1] as Fresh).seq;
  return new StoreError('store.conflict', `${conv}: seqs ${first}..${last} already hold another writer's messages`);
}

function keyOf(device: unknown, clientMsgId: unknown): string {
  return JSON.stringify([device, clientMsgId]);
}

function validate(drafts: MessageDraft[]): void {
  if (!Array.isArray(drafts) || drafts.length === 0) throw invalid('append needs at least one draft');
  for (const d of drafts) {
    requireId('messageId', d.messageId);
    requireId('senderUser', d.senderUser);
    requireId('senderDevice', d.senderDevice);
    requireId('clientMsgId', d.clientMsgId);
    if (!(d.body instanceof Uint8Array)) throw invalid('body must be a Uint8Array');
    requireMs('sentAtMs', d.sentAtMs);
    if (d.media !== undefined) {
      if (!Array.isArray(d.media) || d.media.length > MAX_MEDIA_PER_MESSAGE) throw invalid(`media must be an array of at most ${MAX_MEDIA_PER_MESSAGE} ids`);
      d.media.forEach((id, i) => requireId(`media[${i}]`, id));
    }
  }
}

function byBucket(fresh: Fresh[], bucketOf: (seq: number) => number): Fresh[][] {
  const out: Fresh[][] = [];
  for (const f of fresh) {
    const last = out[out.length - 1];
    if (last && bucketOf((last[0] as Fresh).seq) === bucketOf(f.seq)) last.push(f);
    else out.push([f]);
  }
  return out;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
