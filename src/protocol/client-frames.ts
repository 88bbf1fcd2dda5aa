import { ERROR_CODES, type ErrorCode } from './codes.js';
import type { ConvCreateFrame, ConvJoinFrame, ConvLeaveFrame, ConvMetaFrame, ConvOkFrame, MemberAddFrame, MemberRemoveFrame, MemberRoleFrame, MembersFrame, MembersPageFrame, ReceiptsFrame, ReceiptsStateFrame, SysEvent } from './client-conv-frames.js';
import type { PresenceEventFrame, PresenceStateFrame, PresenceSubFrame, PresenceUnsubFrame, TypingEventFrame, TypingFrame } from './client-presence-frames.js';

/**
 * Frames of the client wire protocol, version 1: one msgpack map `{ t, ...fields }` per binary
 * WebSocket message. docs/PROTOCOL.md is the prose contract; these types and schemas are the
 * executable one. Pure code, shared by the gateway and the client SDK.
 *
 * This file holds the version, the messaging frames (send, receipts, sync, history, hello, errors)
 * and the ClientFrame and ServerFrame unions. Beside it: client-conv-frames.ts (groups and
 * channels: membership, metadata, member pages, group receipts), client-presence-frames.ts
 * (presence and typing) and client-frame-schemas.ts (the schemas that validate frames).
 *
 * Strict one way, lenient the other: the server rejects any client frame that is not exactly as
 * described (unknown keys, wrong types, out-of-range values), while clients accept server frames with
 * extra keys and ignore unknown frame types, so a server can add fields and frames within version 1.
 *
 * Integers (ids, seqs, timestamps) are non-negative safe integers. On the wire any msgpack number
 * type that holds the exact value is accepted (timestamps above 2^32 travel as float64).
 */

export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

/** Client message ids: printable ASCII without space, 1 to 64 characters (a UUID fits). */
export const CLIENT_MSG_ID_PATTERN = /^[\x21-\x7e]{1,64}$/;
/** Upper bound of `sync.limit` and `history.limit`. The server may return fewer (byte budget). */
export const MAX_PAGE_LIMIT = 500;
/** `sync.limit` when the client gives none. */
export const DEFAULT_SYNC_LIMIT = 100;
/** Most entries in `sync.cursors`. Frame size bounds it lower in practice (about 1,000 ids). */
export const MAX_SYNC_CURSORS = 4096;
/**
 * Requests awaiting an answer per connection (sent as hello.limits.maxInflightRequests). A protocol
 * constant rather than a config key: it bounds per-connection server memory, not a deployment choice.
 */
export const MAX_INFLIGHT_REQUESTS = 64;

/** Most media ids in one `send.media`. */
export const MAX_SEND_MEDIA = 16;

export type ConversationKind = 'direct' | 'group' | 'channel';
export type ReceiptKind = 'delivered' | 'read';

// ---- client -> server ----------------------------------------------------------------------------

interface SendBase {
  t: 'send';
  /** Request id, echoed by `sent` or `error`. Chosen by the client; unique among its open requests. */
  id: number;
  /** Client message id: with the sending device, the idempotency key of the send. */
  cmid: string;
  /** Opaque bytes (the server never reads them), at most gateway.maxBodyBytes. */
  body: Uint8Array;
  /** Media ids (uploaded over HTTP) the message refers to, at most MAX_SEND_MEDIA. */
  media?: string[];
}
/** Send a message, addressed by exactly one of `to` (a user: the 1:1 conversation) or `conv`. */
export type SendFrame = SendBase & ({ to: string; conv?: undefined } | { conv: string; to?: undefined });

/** Delivered-ack: this device holds every message of `conv` up to `seq` (cumulative). No answer. */
export interface DackFrame {
  t: 'dack';
  conv: string;
  seq: number;
}

/** The user has read `conv` up to `seq` (cumulative, for all their devices). No answer. */
export interface ReadFrame {
  t: 'read';
  conv: string;
  seq: number;
}

/** One round of catch-up: `sync.batch` frames, then exactly one `synced`. */
export interface SyncFrame {
  t: 'sync';
  id: number;
  /** conv -> highest seq the device holds. Missing conversations use the stored delivered cursor. */
  cursors?: Record<string, number>;
  /** Most messages per conversation in this round; default DEFAULT_SYNC_LIMIT, max MAX_PAGE_LIMIT. */
  limit?: number;
}

/** A page of older messages, newest first. */
export interface HistoryFrame {
  t: 'history';
  id: number;
  conv: string;
  /** Exclusive upper bound; absent means from the newest message. */
  before?: number;
  limit: number;
}

export interface PingFrame {
  t: 'ping';
  id: number;
}

export type ClientFrame =
  | SendFrame
  | DackFrame
  | ReadFrame
  | SyncFrame
  | HistoryFrame
  | PingFrame
  | PresenceSubFrame
  | PresenceUnsubFrame
  | TypingFrame
  | ConvCreateFrame
  | MemberAddFrame
  | MemberRemoveFrame
  | MemberRoleFrame
  | ConvLeaveFrame
  | ConvJoinFrame
  | ConvMetaFrame
  | MembersFrame
  | ReceiptsFrame;
export type ClientFrameType = ClientFrame['t'];
export type ClientFrameOf<K extends ClientFrameType> = Extract<ClientFrame, { t: K }>;

// ---- server -> client ----------------------------------------------------------------------------

export interface HelloLimits {
  maxFrameBytes: number;
  maxBodyBytes: number;
  framesPerSecond: number;
  idleTimeoutS: number;
  maxInflightRequests: number;
}

/** First frame of every session, sent once authentication succeeded. */
export interface HelloFrame {
  t: 'hello';
  v: number;
  user: string;
  device: string;
  /** Id of the node serving the connection (for support and logs). */
  node: string;
  limits: HelloLimits;
}

/** The send was durably stored (one tick). `dup` when it was a retry of an earlier send. */
export interface SentFrame {
  t: 'sent';
  id: number;
  conv: string;
  seq: number;
  mid: string;
  dup: boolean;
  /** Server time of the original send, ms since the epoch. */
  ts: number;
}

/** A stored message as it appears in `msg`, `sync.batch` and `history.page`. */
export interface MessageEntry {
  seq: number;
  mid: string;
  /** Sender user and device. */
  from: string;
  fdev: string;
  body: Uint8Array;
  ts: number;
  /** The sender's client message id; present only when the receiving user is the sender. */
  cmid?: string;
  /** A membership/metadata event (groups, channels): `from` made it, `fdev` is `~`, `body` empty. */
  sys?: SysEvent;
  /** Media ids the message refers to. */
  media?: string[];
}

/** A live message, to every member device except the sending device. */
export interface MsgFrame extends MessageEntry {
  t: 'msg';
  conv: string;
  kind: ConversationKind;
}

/** `user` (on `device`, for delivered) has received or read `conv` up to `seq` (cumulative). */
export interface ReceiptFrame {
  t: 'receipt';
  conv: string;
  kind: ReceiptKind;
  user: string;
  device?: string;
  seq: number;
  /** With `user: '*'`: every member of the group has received or read up to `seq`. */
  all?: true;
}

/** Messages of one conversation after the device's cursor, ascending. */
export interface SyncBatchFrame {
  t: 'sync.batch';
  id: number;
  conv: string;
  kind: ConversationKind;
  msgs: MessageEntry[];
  /** Head of the conversation when this round started. */
  head: number;
  /** True when messages after the cursor were deleted by retention; they start at `retainedFrom`. */
  expired?: boolean;
  retainedFrom?: number;
  /**
   * The user's join floor in this group, when the device's cursor was below it: seqs before `from`
   * are not the user's to see (not a gap); the batch starts at `from` (section 3.7).
   */
  from?: number;
}

/** End of one sync round. When `more` is false the device holds everything up to `heads`. */
export interface SyncedFrame {
  t: 'synced';
  id: number;
  /** Every conversation the user belongs to -> its head when the round started. */
  heads: Record<string, number>;
  /** The user's read cursors (conv -> seq), so every device shows the same unread state. */
  reads: Record<string, number>;
  /** True when some conversation has messages beyond what this round sent: sync again. */
  more: boolean;
  /**
   * Receipt state a device missed while offline: for each direct conversation this round sent
   * messages of, the other user's highest delivered and read seqs (added by the actors helper).
   */
  peers?: Record<string, PeerReceipts>;
  /**
   * Unread badges: conv -> head minus the user's read cursor, for the conversations where that is
   * above 0 (absent ones have nothing unread). Counted from seqs alone (no message is read), so the
   * user's own messages and membership events after the read cursor count too; clients move the read
   * cursor past their own sends. The same count as the push badge. Always sent by this server.
   */
  unread?: Record<string, number>;
  /** Sum of `unread` (the app badge). */
  unreadTotal?: number;
  /** Groups of the round whose join floor is above 1: conv -> floor (section 3.7). */
  from?: Record<string, number>;
  /**
   * Conversations the user was removed from or left, that this device's cursor had not passed yet:
   * conv -> seq of that remove/leave event (also its `heads` entry). Once the device's cursor is at
   * or past it, the conversation no longer appears in sync (section 3.7).
   */
  left?: Record<string, number>;
}

/**
 * The device's one-time prekeys ran low (fewer than `threshold` left, `remaining` now) after another
 * device fetched its bundle: upload more with PUT /keys. Best effort; `low: true` in the /keys
 * answers says the same.
 */
export interface KeysLowFrame {
  t: 'keys.low';
  remaining: number;
  threshold: number;
}

/** The other user of a direct conversation: delivered (on any of their devices) and read up to. */
export interface PeerReceipts {
  user: string;
  delivered: number;
  read: number;
}

export interface HistoryPageFrame {
  t: 'history.page';
  id: number;
  conv: string;
  /** Descending seq. */
  msgs: MessageEntry[];
  /** `before` for the next older page, or null when there is nothing older. */
  next: number | null;
  /** True when older messages existed but were deleted by retention. */
  expired: boolean;
  /** The page stopped at the user's join floor in this group: nothing below `from` (section 3.7). */
  from?: number;
}

export interface PongFrame {
  t: 'pong';
  id: number;
}

export interface ErrorFrame {
  t: 'error';
  /** The request id this answers, when the failed frame had one. */
  id?: number;
  /** One of ERROR_CODES when sent by this server version; clients must tolerate unknown codes. */
  code: string;
  msg: string;
  retry: boolean;
  /** For invalid_field: the offending field (dotted path, e.g. `cursors.g:abc`). */
  field?: string;
}

export type ServerFrame =
  | HelloFrame
  | SentFrame
  | MsgFrame
  | ReceiptFrame
  | SyncBatchFrame
  | SyncedFrame
  | HistoryPageFrame
  | PongFrame
  | PresenceStateFrame
  | PresenceEventFrame
  | TypingEventFrame
  | ConvOkFrame
  | MembersPageFrame
  | ReceiptsStateFrame
  | KeysLowFrame
  | ErrorFrame;
export type ServerFrameType = ServerFrame['t'];
export type ServerFrameOf<K extends ServerFrameType> = Extract<ServerFrame, { t: K }>;

/** Builds an error frame with `retry` taken from the code table. */
export function errorFrame(code: ErrorCode, msg: string, id?: number, field?: string): ErrorFrame {
  const frame: ErrorFrame = { t: 'error', code, msg, retry: ERROR_CODES[code].retry };
  if (id !== undefined) frame.id = id;
  if (field !== undefined) frame.field = field;
  return frame;
}
