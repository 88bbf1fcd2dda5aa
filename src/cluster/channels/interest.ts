/**
 * The channel-interest registry: for each broadcast channel, the shard-thread endpoints
 * (`<node>.<shard>`, src/cluster/routing.ts) that hold at least one live subscriber socket of it.
 * A channel post is published once per node listed here (src/cluster/channel-delivery.ts); a node
 * that is not listed gets nothing. Soft state like the session registry (DESIGN.md 2.8): losing an
 * entry only delays posts for that node's subscribers until they sync (channel delivery is
 * at-most-once and readers catch up by cursor).
 *
 * Contract (every implementation, checked by test/contract/channel-interest.test.ts):
 *
 * - An entry is (channel, endpoint) with its own expiry, `ttlMs` after its last `add` or `refresh`.
 *   Expired entries are never listed. Only the endpoint itself writes its entries, so there is no
 *   ownership to compare: `add` is an upsert, idempotent, and returns whether the entry was new
 *   (absent or expired).
 * - `remove` deletes the entry; a no-op (false) when absent.
 * - `refresh` re-adds many entries of one endpoint in one round trip (the thread's heartbeat): an
 *   entry lost meanwhile (Redis restart) comes back.
 * - `list` returns the channel's live endpoints, distinct, in no particular order.
 * - Channels are non-empty strings of at most 256 characters, endpoints match the bus's node ids,
 *   ttlMs is a positive integer; anything else is `cluster.invalid`.
 * - Errors: `ClusterError` only; `cluster.unavailable` / `cluster.timeout` are retryable and every
 *   operation is safe to retry.
 */
export interface ChannelInterest {
  readonly impl: 'memory' | 'redis';
  add(channel: string, endpoint: string, ttlMs: number): Promise<boolean>;
  remove(channel: string, endpoint: string): Promise<boolean>;
  refresh(channels: readonly string[], endpoint: string, ttlMs: number): Promise<void>;
  list(channel: string): Promise<string[]>;
}

export const MAX_CHANNEL_ID_LENGTH = 256;
