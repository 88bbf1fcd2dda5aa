/**
 * How the shard threads of one node reach each other. In a node, each worker's `post` is a
 * MessagePort to the target thread (bytes transferred, not copied) and the port's 'message' event
 * calls the receiving shard's `onLinkMessage`. In tests, `MemoryShardNetwork` does the same
 * in-process, so the actor code cannot tell the difference.
 *
 * Contract: at-most-once and FIFO per (sender, receiver) pair, like a MessagePort. A frame to a shard
 * that is gone (crashed, restarting) is lost; delivery retries and sync cover that, never the link.
 */
export interface ShardLink {
  post(shard: number, bytes: Uint8Array): void;
}

export type LinkReceiver = (bytes: Uint8Array) => void;

/**
 * N shards linked in memory. Frames are copied and handed over on a later macrotask (setImmediate),
 * as a MessagePort would: never re-entrantly inside `post`.
 */
export class MemoryShardNetwork {
  private readonly receivers = new Map<number, LinkReceiver>();
  /** Frames posted, by receiving shard (tests look at cross-shard traffic). */
  readonly posted: number[];
  /** When set, frames are silently lost (a crashed receiver); models the at-most-once contract. */
  cut = new Set<number>();

  constructor(readonly shardCount: number) {
    this.posted = new Array<number>(shardCount).fill(0);
  }

  /** The link a shard uses to send. */
  link(from: number): ShardLink {
    return {
      post: (shard, bytes) => {
        if (shard === from) throw new Error(`shard ${from} posted a frame to itself`);
        if (shard < 0 || shard >= this.shardCount) throw new Error(`no shard ${shard}`);
        this.posted[shard]! += 1;
        if (this.cut.has(shard)) return;
        const copy = Uint8Array.from(bytes);
        setImmediate(() => {
          if (this.cut.has(shard)) return;
          this.receivers.get(shard)?.(copy);
        });
      },
    };
  }

  /** Where frames for `shard` go (its createShardActors(...).onLinkMessage). */
  attach(shard: number, receiver: LinkReceiver): void {
    this.receivers.set(shard, receiver);
  }
}
