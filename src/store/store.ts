import type {
  AppendResult,
  Conversation,
  ConversationKind,
  CursorEntry,
  CursorUpdate,
  Departure,
  Device,
  Member,
  MessageDraft,
  Page,
  Role,
  UserConversation,
} from './types.js';

/**
 * The durable store. Two engines implement it: `embedded` (lmdb on local disk) and `scylla`
 * (cassandra-driver against ScyllaDB; tested against Apache Cassandra 5). Both pass the same
 * contract suite (test/contract/store.test.ts).
 *
 * General rules for every method:
 * - A promise that resolves means the effect is durable (embedded: synced to disk; scylla: written at
 *   the configured write consistency). A rejection is always a StoreError (src/store/errors.ts); a
 *   `store.timeout` rejection means the effect may or may not have happened, and every write here is
 *   safe to retry.
 * - Expected outcomes are data: a missing conversation is `null`, a creation that found an existing
 *   record says `created: false`.
 * - Seqs are dense per conversation: 1, 2, 3, ... with no gaps and no reuse.
 */
export interface Store {
  readonly engine: 'embedded' | 'scylla';

  /** Opens connections and runs schema migrations (versioned, safe to run from many nodes at once). */
  open(): Promise<void>;
  /** Releases connections and files. Idempotent. Pending writers fail with `store.unavailable`. */
  close(): Promise<void>;

  // ---- conversations and membership -------------------------------------------------------------

  /**
   * Creates a conversation with its initial members, idempotent on `id`: when it already exists,
   * nothing changes and the existing record is returned with `created: false`.
   */
  createConversation(input: {
    id: string;
    kind: ConversationKind;
    createdBy: string;
    createdAtMs: number;
    meta?: Record<string, string>;
    members: { userId: string; role: Role }[];
  }): Promise<{ created: boolean; conversation: Conversation }>;

  getConversation(id: string): Promise<Conversation | null>;

  /** Replaces the conversation's metadata. `store.not_found` when it does not exist. */
  updateConversationMeta(id: string, meta: Record<string, string>): Promise<void>;

  /**
   * Adds a member or changes its role (upsert). Also adds the conversation to the user's list and
   * clears a departure of the user from it (a re-add), in the same atomic write. `fromSeq` is the
   * seq of the event that added the member (its join floor; 0 or absent: none).
   * `store.not_found` when the conversation does not exist.
   */
  putMember(conversationId: string, userId: string, role: Role, joinedAtMs: number, fromSeq?: number): Promise<void>;
  /**
   * Removes a member and the conversation from the user's list. With `departure`, records it in the
   * user's departures (listDepartures) in the same atomic write; without, departures are left
   * untouched. A no-op for the member rows when not a member.
   */
  removeMember(conversationId: string, userId: string, departure?: { fromSeq: number; leftSeq: number }): Promise<void>;
  /**
   * The conversations the user left or was removed from (by an event) and was not added to since,
   * for `departuresRetentionS` (config retention.departuresS) after each departure was recorded; an
   * older one is no longer listed (scylla: the row's TTL; embedded: skipped, then swept). The
   * retention is fixed per departure when it is written.
   */
  listDepartures(userId: string): Promise<Departure[]>;
  getMember(conversationId: string, userId: string): Promise<Member | null>;
  /** Members ordered by user id, `limit` at a time, starting after `afterUserId`. */
  listMembers(conversationId: string, opts?: { afterUserId?: string; limit?: number }): Promise<Member[]>;
  /**
   * The user's conversations with each conversation's head (sync starts from this). The head covers
   * every acknowledged append; it may trail a batch whose append never resolved (timed out) until
   * the conversation is next written or opened.
   */
  listUserConversations(userId: string): Promise<UserConversation[]>;

  // ---- message log ------------------------------------------------------------------------------

  /**
   * Claims the single-writer role of a conversation for `epoch` and returns a writer positioned at
   * the authoritative head.
   *
   * Fencing: after `openWriter(c, e)` resolves, any writer of `c` with an epoch below `e` is rejected
   * with `store.stale_epoch` on its next append, and can no longer write anything. Opening with an
   * epoch below the conversation's current one rejects with `store.stale_epoch`. Opening again with
   * the same epoch is allowed (a restart of the same activation) and re-reads the head.
   * `store.not_found` when the conversation does not exist.
   */
  openWriter(conversationId: string, epoch: number): Promise<ConversationWriter>;

  /**
   * Forward page: messages with seq > afterSeq, ascending, at most `limit`, across buckets.
   * `expired` is true when afterSeq + 1 < retainedFrom (the caller missed trimmed history).
   */
  readForward(conversationId: string, afterSeq: number, limit: number): Promise<Page>;
  /** Backward page: messages with seq < beforeSeq, descending, at most `limit`, across buckets. */
  readBackward(conversationId: string, beforeSeq: number, limit: number): Promise<Page>;
  /** Highest committed seq (0 when empty or unknown conversation). */
  head(conversationId: string): Promise<number>;

  /**
   * Retention: removes whole buckets whose newest message was sent before `olderThanMs`, oldest first,
   * stopping at the first bucket that is still needed (never removes the bucket holding the head).
   * Moves `retainedFrom` forward and returns it. Safe to run concurrently with a writer.
   */
  trimExpired(conversationId: string, olderThanMs: number): Promise<number>;
  /** Lowest seq still retained (1 when nothing was ever trimmed). */
  retainedFrom(conversationId: string): Promise<number>;

  // ---- cursors ----------------------------------------------------------------------------------

  /**
   * Per-device delivered cursors. Monotonic: a cursor only moves forward, whatever order updates
   * arrive in (an update to a lower seq is a no-op). One call may carry many updates (batched).
   */
  advanceDelivered(updates: CursorUpdate[]): Promise<void>;
  getDelivered(userId: string, deviceId: string): Promise<CursorEntry[]>;

  /** Per-user read cursor (read up to seq N). Monotonic like the delivered cursor. */
  advanceRead(userId: string, conversationId: string, seq: number): Promise<void>;
  getRead(userId: string): Promise<CursorEntry[]>;

  // ---- devices ----------------------------------------------------------------------------------

  /** Registers a device or updates its platform (upsert; keeps an existing push token). */
  putDevice(device: Omit<Device, 'pushProvider' | 'pushToken'>): Promise<void>;
  /**
   * Sets or clears (token null, which also clears the provider) a device's push token.
   * `store.not_found` when the device is unknown.
   */
  setPushToken(userId: string, deviceId: string, provider: Device['pushProvider'], token: string | null): Promise<void>;
  listDevices(userId: string): Promise<Device[]>;
  removeDevice(userId: string, deviceId: string): Promise<void>;
}

/**
 * The single writer of one conversation, from `Store.openWriter`.
 *
 * - `append` is a group commit: the whole batch goes to the engine in one round trip per bucket it
 *   touches (one in the common case), fenced by the writer's epoch. It resolves only when every new
 *   message is durable; the caller acks senders after that, never before.
 * - Idempotent on (conversation, senderDevice, clientMsgId) for the configured idempotency TTL: a
 *   replay returns the original seq and messageId with `duplicate: true` and writes nothing. When two
 *   drafts in one batch share a key, the first is written and the later ones are reported as its
 *   duplicates.
 * - Never overwrites a stored message. When another writer's message already holds a seq, the batch
 *   fails with `store.conflict`; when the epoch was superseded it fails with `store.stale_epoch`.
 *   After either, the writer is closed and every later call fails with the same error. A batch that
 *   spans two buckets may commit its first part and fail the rest: the rejection's StoreError then
 *   carries `committed` (the results of the committed prefix, in draft order), so those can be acked.
 * - Calls are serialized internally: concurrent `append` calls run one after another.
 */
export interface ConversationWriter {
  readonly conversationId: string;
  readonly epoch: number;
  /** Highest seq this writer has committed or observed at open. */
  readonly head: number;
  append(drafts: MessageDraft[]): Promise<AppendResult[]>;
}
