/**
 * Where a conversation activation gets its fencing epoch (Store.openWriter). Every activation must
 * get an epoch above every earlier activation of the same conversation, or its openWriter is refused.
 */
export interface EpochSource {
  next(conversationId: string): Promise<number>;
}

/**
 * Single-node epochs: `Date.now() * 1000 + counter`, strictly increasing within the source. The
 * counter part lets a thousand activations share a millisecond; beyond that the epoch runs ahead
 * of the clock, still increasing. Epochs survive restarts as long as the wall clock does not go
 * backwards across the restart by more than the lead built up: a shard thread that restarts after
 * the clock stepped back gets `store.stale_epoch` from openWriter until the clock catches up.
 * Only one shard owns a conversation (hash placement), so per-source monotonicity is enough within
 * a node; the cluster replaces this with epochs issued by the directory.
 * The result stays below 2^53 until the year 2255.
 */
export class ClockEpochSource implements EpochSource {
  private last = 0;

  constructor(private readonly now: () => number = Date.now) {}

  next(_conversationId?: string): Promise<number> {
    return Promise.resolve(this.nextSync());
  }

  nextSync(): number {
    const e = Math.max(Math.floor(this.now()) * 1000, this.last + 1);
    this.last = e;
    return e;
  }
}
