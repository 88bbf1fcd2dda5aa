/**
 * Value shapes stored in the embedded engine's tables (msgpack-encoded by lmdb). Ids that are part
 * of a row's key are not repeated in its value.
 */
import type {
  ConversationKind,
  DevicePlatform,
  PushProvider,
  Role,
  StoredMessage,
} from '../types.js';

/** Stored under meta 'layout': facts about the on-disk layout that options must agree with. */
export interface LayoutRow {
  bucketSize: number;
}

export interface ConversationRow {
  kind: ConversationKind;
  createdBy: string;
  createdAtMs: number;
  meta: Record<string, string>;
}

/**
 * The hot per-conversation record, kept apart from ConversationRow so every append rewrites a few
 * bytes instead of the conversation's metadata.
 */
export interface LogState {
  /** Highest epoch that opened a writer; appends from any other epoch are fenced. */
  epoch: number;
  /** Highest committed seq (0 when empty). */
  head: number;
  /** Lowest seq still retained (1 until retention removes a bucket). */
  retainedFrom: number;
}

export const NEW_LOG_STATE: LogState = { epoch: 0, head: 0, retainedFrom: 1 };

export interface MemberRow {
  role: Role;
  joinedAtMs: number;
  /** The join floor (Member.fromSeq); absent in rows written before it existed (read as 0). */
  fromSeq?: number;
}

/** Index row of a user's conversation list; `kind` is copied because it never changes. */
export interface UserConversationRow {
  kind: ConversationKind;
  role: Role;
  joinedAtMs: number;
  fromSeq?: number;
}

/** departures[user, conv]: a membership ended by a remove/leave event (store.ts Departure). */
export interface DepartureRow {
  kind: ConversationKind;
  fromSeq: number;
  leftSeq: number;
  /**
   * When the row stops counting and is swept (retention.departuresS after it was written; indexed in
   * departures_expiry). Absent only in rows written before retention existed, until migration 2.
   */
  expiresAtMs?: number;
}

export interface MessageRow {
  messageId: string;
  senderUser: string;
  senderDevice: string;
  clientMsgId: string;
  body: Uint8Array;
  sentAtMs: number;
  /** Media ids; absent when none (and in every row written before the field existed). */
  media?: string[];
}

export interface IdempotencyRow {
  seq: number;
  messageId: string;
  expiresAtMs: number;
}

export interface DeviceRow {
  platform: DevicePlatform;
  pushProvider: PushProvider | null;
  pushToken: string | null;
  createdAtMs: number;
}

/**
 * lmdb decodes msgpack binaries as Node Buffers (copies, never views of the mapped file). Callers get
 * a plain Uint8Array over the same bytes, so deep-equality against a Uint8Array holds and no Buffer
 * methods leak through the store boundary.
 */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  if (Object.getPrototypeOf(bytes) === Uint8Array.prototype) return bytes;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function toStoredMessage(conversationId: string, seq: number, row: MessageRow): StoredMessage {
  const m: StoredMessage = {
    conversationId,
    seq,
    messageId: row.messageId,
    senderUser: row.senderUser,
    senderDevice: row.senderDevice,
    clientMsgId: row.clientMsgId,
    body: plainBytes(row.body),
    sentAtMs: row.sentAtMs,
  };
  if (row.media !== undefined && row.media.length > 0) m.media = [...row.media];
  return m;
}
