/**
 * Plain data records that cross the store boundary. No I/O here.
 *
 * Sequence numbers are JavaScript numbers: a conversation would need 2^53
 * messages to overflow them, and numbers keep hot paths free of BigInt.
 */

export type ConversationKind = 'direct' | 'group' | 'channel';
export const CONVERSATION_KINDS: readonly ConversationKind[] = ['direct', 'group', 'channel'];

export type Role = 'owner' | 'admin' | 'member';
export const ROLES: readonly Role[] = ['owner', 'admin', 'member'];

export interface Conversation {
  id: string;
  kind: ConversationKind;
  createdBy: string;
  createdAtMs: number;
  /** Small free-form metadata (group name, avatar media id). */
  meta: Record<string, string>;
}

export interface Member {
  conversationId: string;
  userId: string;
  role: Role;
  joinedAtMs: number;
  /**
   * Seq of the log event that (last) added the member: its join floor (groups show it nothing
   * below). 0 when unknown: rows written before schema version 3 (scylla) or by callers that pass
   * none (direct conversations, channel subscribers).
   */
  fromSeq: number;
}

/** One row of a user's conversation list, joined with the conversation's head. */
export interface UserConversation {
  conversationId: string;
  kind: ConversationKind;
  role: Role;
  joinedAtMs: number;
  /** The member's join floor (Member.fromSeq); absent reads as 0. */
  fromSeq?: number;
  /** Highest committed seq of the conversation (0 when empty). */
  head: number;
}

/**
 * The lowest seq a member may see: its join floor in a group; 0 (the whole log) in direct
 * conversations and channels (a channel's history is public to whoever joins it).
 */
export function joinFloor(kind: ConversationKind, fromSeq: number | undefined): number {
  return kind === 'group' ? (fromSeq ?? 0) : 0;
}

/**
 * A conversation the user was removed from or left by a log event: kept in the user's list of
 * departures until the user is added again or retention.departuresS has passed, so its devices can
 * learn the removal through sync.
 */
export interface Departure {
  conversationId: string;
  kind: ConversationKind;
  /** The floor of the membership that ended (Member.fromSeq). */
  fromSeq: number;
  /** Seq of the remove/leave event that ended it. */
  leftSeq: number;
}

/** What a writer hands to `append`: everything but the seq. */
export interface MessageDraft {
  /** Server-generated, globally unique message id. */
  messageId: string;
  senderUser: string;
  senderDevice: string;
  /** Client-chosen id; (conversation, senderDevice, clientMsgId) is the idempotency key. */
  clientMsgId: string;
  /** Opaque bytes: the server never interprets message bodies. */
  body: Uint8Array;
  sentAtMs: number;
  /**
   * Media ids (src/media: SHA-256 hex) the message refers to, in the sender's order. Absent when the
   * message carries none; an empty list is stored and read back as absent.
   */
  media?: string[];
}

export interface StoredMessage extends MessageDraft {
  conversationId: string;
  seq: number;
}

/** Outcome of one draft in an append batch. */
export interface AppendResult {
  seq: number;
  messageId: string;
  /** True when this was a replay of an earlier append: seq and messageId are the original ones. */
  duplicate: boolean;
}

export interface Page {
  /** Messages in the requested direction (ascending for forward, descending for backward). */
  messages: StoredMessage[];
  /** Cursor for the next page (pass as `afterSeq` / `beforeSeq`), or null when there is nothing more. */
  next: number | null;
  /** Highest committed seq at the time of the read. */
  head: number;
  /** Lowest seq still retained; everything below it was removed by retention. */
  retainedFrom: number;
  /**
   * True when the requested range reached below `retainedFrom`: some messages the caller asked for no
   * longer exist. The caller must treat this as an authoritative gap, never as "maybe recovered".
   */
  expired: boolean;
}

export type DevicePlatform = 'ios' | 'android' | 'web' | 'desktop' | 'cli' | 'other';
export const DEVICE_PLATFORMS: readonly DevicePlatform[] = ['ios', 'android', 'web', 'desktop', 'cli', 'other'];

export type PushProvider = 'apns' | 'fcm' | 'webpush' | 'webhook' | 'log';
export const PUSH_PROVIDERS: readonly PushProvider[] = ['apns', 'fcm', 'webpush', 'webhook', 'log'];

export interface Device {
  userId: string;
  deviceId: string;
  platform: DevicePlatform;
  pushProvider: PushProvider | null;
  pushToken: string | null;
  createdAtMs: number;
}

/** Per-conversation cursor value as read back from the store. */
export interface CursorEntry {
  conversationId: string;
  seq: number;
}

export interface CursorUpdate {
  userId: string;
  deviceId: string;
  conversationId: string;
  seq: number;
}
