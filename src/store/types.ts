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
}

/** One row of a user's conversation list, joined with the conversation's head. */
export interface UserConversation {
  conversationId: string;
  kind: ConversationKind;
  role: Role;
  joinedAtMs: number;
  /** Highest committed seq of the conversation (0 when empty). */
  head: number;
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
