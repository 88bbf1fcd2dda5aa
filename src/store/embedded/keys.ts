/**
 * Key layout of the embedded engine. Every table is a named lmdb database whose keys are arrays,
 * which lmdb's ordered-binary encoding sorts element by element (numbers numerically, strings by
 * their UTF-8 bytes). Range reads are therefore plain cursor walks over adjacent keys.
 *
 * | table                 | key                                              | value                 |
 * |-----------------------|--------------------------------------------------|-----------------------|
 * | meta                  | 'schema_version' / 'layout'                      | number / LayoutRow    |
 * | conversations         | conversationId                                   | ConversationRow       |
 * | logs                  | conversationId                                   | LogState              |
 * | members               | [conversationId, userId]                         | MemberRow             |
 * | user_conversations    | [userId, conversationId]                         | UserConversationRow   |
 * | messages              | [conversationId, bucket, seq]                    | MessageRow            |
 * | idempotency           | [conversationId, senderDevice, clientMsgId]      | IdempotencyRow        |
 * | idempotency_expiry    | [expiresAtMs, conversationId, senderDevice, clientMsgId] | 1             |
 * | departures            | [userId, conversationId]                         | DepartureRow          |
 * | departures_expiry     | [expiresAtMs, userId, conversationId]            | 1                     |
 * | delivered_cursors     | [userId, deviceId, conversationId]               | seq                   |
 * | read_cursors          | [userId, conversationId]                         | seq                   |
 * | devices               | [userId, deviceId]                               | DeviceRow             |
 *
 * Messages carry the bucket (floor(seq / bucketSize)) in their key although lmdb has no partitions:
 * it mirrors the scylla engine's (conversation, bucket) partitions, so retention removes the same
 * whole buckets and both engines report the same `retainedFrom`.
 */

export const TABLES = {
  meta: 'meta',
  conversations: 'conversations',
  logs: 'logs',
  members: 'members',
  userConversations: 'user_conversations',
  departures: 'departures',
  departuresExpiry: 'departures_expiry',
  messages: 'messages',
  idempotency: 'idempotency',
  idempotencyExpiry: 'idempotency_expiry',
  delivered: 'delivered_cursors',
  read: 'read_cursors',
  devices: 'devices',
} as const;

export const META_SCHEMA_VERSION = 'schema_version';
export const META_LAYOUT = 'layout';

/**
 * A key element greater than any string or number: ordered-binary passes byte arrays through
 * unchanged, and no encoded primitive starts with 0xff. `[a, b, PREFIX_END]` closes a prefix range.
 */
export const PREFIX_END = Uint8Array.of(0xff);

export function bucketOf(seq: number, bucketSize: number): number {
  return Math.floor(seq / bucketSize);
}

/** First seq stored in a bucket (bucket 0 starts at 1 because seqs start at 1). */
export function bucketStart(bucket: number, bucketSize: number): number {
  return Math.max(1, bucket * bucketSize);
}

export function bucketEnd(bucket: number, bucketSize: number): number {
  return (bucket + 1) * bucketSize - 1;
}

export function messageKey(conversationId: string, seq: number, bucketSize: number): [string, number, number] {
  return [conversationId, bucketOf(seq, bucketSize), seq];
}

export function idempotencyKey(conversationId: string, senderDevice: string, clientMsgId: string): [string, string, string] {
  return [conversationId, senderDevice, clientMsgId];
}

export function idempotencyExpiryKey(
  expiresAtMs: number,
  conversationId: string,
  senderDevice: string,
  clientMsgId: string,
): [number, string, string, string] {
  return [expiresAtMs, conversationId, senderDevice, clientMsgId];
}

/**
 * True when `key` really starts with `prefix`. A prefix range `[prefix] .. [...prefix, PREFIX_END]`
 * can also contain keys of a longer id whose next character sorts below the array delimiter
 * (control characters), so prefix scans check each key.
 */
export function hasPrefix(key: unknown, prefix: readonly (string | number)[]): key is (string | number)[] {
  if (!Array.isArray(key) || key.length <= prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}
