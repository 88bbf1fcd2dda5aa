import { TicksError } from '../lib/errors.js';
import type { ConversationKind, HelloFrame, ReceiptKind } from '../protocol/client-frames.js';
import type { SysEvent } from '../protocol/client-conv-frames.js';

/**
 * Public types of the client SDK: what the app receives in events and from calls. Pure types plus
 * the SDK's error class; browser-safe.
 */

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** How a message reached this device. */
export type MessageSource = 'live' | 'sync' | 'history';

/** A message, emitted to the app once per message id, in seq order within its conversation. */
export interface Message {
  conv: string;
  /** Known from `msg` and `sync.batch`; for a message first seen in a history page, from earlier frames. */
  kind: ConversationKind | undefined;
  seq: number;
  mid: string;
  from: string;
  fdev: string;
  body: Uint8Array;
  ts: number;
  /** The sender's client message id; present only on the sending user's own messages. */
  cmid?: string;
  /**
   * A membership/metadata event of a group or channel (who was added, removed, left, changed role,
   * renamed): it holds a seq like a message, `body` is empty. Replay them to know the members.
   */
  sys?: SysEvent;
  /** Media ids the message refers to. */
  media?: string[];
  source: MessageSource;
}

/** The result of a send: the message is durably stored (one tick). */
export interface SendResult {
  conv: string;
  seq: number;
  mid: string;
  /** True when the server had stored this cmid before (a retry): seq and mid are the original ones. */
  dup: boolean;
  ts: number;
}

export interface SentEvent extends SendResult {
  cmid: string;
}

export interface SendFailedEvent {
  cmid: string;
  error: ClientError;
}

export interface ReceiptEvent {
  conv: string;
  kind: ReceiptKind;
  user: string;
  /** For `delivered` receipts from a live frame: the device that acked. */
  device?: string;
  seq: number;
  /** Groups: with `user` `'*'`, every member has received (or read) up to `seq`. */
  all?: true;
  /** `live`: a receipt frame; `sync`: state learned from `synced.peers` or `synced.reads`. */
  source: 'live' | 'sync';
}

export interface SyncedEvent {
  /** Every conversation the user belongs to, with its head when the last round started. */
  heads: Record<string, number>;
  /** The user's read cursors. */
  reads: Record<string, number>;
  /** Unread badges: conversations with something unread -> head minus read cursor (server-computed). */
  unread: Record<string, number>;
  /** Sum of `unread` (the app badge). */
  unreadTotal: number;
  /** Sync rounds this catch-up took (more than one when the server paged with `more: true`). */
  rounds: number;
  /** Groups where the user's join floor is above 1: conv -> the lowest seq it may see. */
  from: Record<string, number>;
  /**
   * Conversations this catch-up delivered up to the user's own removal (or leave): conv -> the seq
   * of that event. The user is no longer a member; they drop out of later syncs.
   */
  left: Record<string, number>;
}

/**
 * Messages `from`..`to` (inclusive) of `conv` were deleted by retention before this device got
 * them: they will never arrive. `from` is undefined when the device had no cursor for `conv`.
 */
export interface GapExpiredEvent {
  conv: string;
  from: number | undefined;
  to: number;
}

export interface KeysLowEvent {
  remaining: number;
  threshold: number;
}

export interface StateEvent {
  state: ClientState;
  /** Reconnect attempt (0 for the first retry), for `reconnecting`. */
  attempt?: number;
  /** Delay before the next connection attempt, for `reconnecting`. */
  delayMs?: number;
  /** The close code that caused a `reconnecting` or `closed` state, when there was one. */
  code?: number;
  /**
   * Why the connection dropped, for `reconnecting`: the server's close reason, or for a close the
   * SDK decided (code 1006) `no hello`, `no pong`, or `unresponsive` (UNRESPONSIVE: requests were
   * outstanding, nothing arrived for responseTimeoutMs, and a ping got no frame back within
   * pongTimeoutMs: a frozen node or a half-open connection).
   */
  reason?: string;
}

/** The client stopped for good: a 45xx close code, a token that cannot be refreshed, or `close()`. */
export interface ClosedEvent {
  code: number;
  reason: string;
}

export interface ErrorEvent {
  error: ClientError;
  /** The conversation the error is about, when known (dack, read, gap repair). */
  conv?: string;
}

export interface ClientEvents {
  hello: HelloFrame;
  message: Message;
  sent: SentEvent;
  'send-failed': SendFailedEvent;
  receipt: ReceiptEvent;
  synced: SyncedEvent;
  'gap-expired': GapExpiredEvent;
  /** This device's one-time prekeys ran low (another device fetched its bundle): upload more. */
  'keys-low': KeysLowEvent;
  error: ErrorEvent;
  state: StateEvent;
  closed: ClosedEvent;
}

/**
 * Errors of the SDK. `code` is a protocol error code (docs/PROTOCOL.md section 5) when the server
 * sent an `error` frame, or one of the `client.*` codes below; `retryable` mirrors the frame's
 * `retry`. Unknown server codes are passed through unchanged.
 */
export class ClientError extends TicksError {
  /** For `invalid_field` and `body_too_large`: the offending field. */
  readonly field: string | undefined;

  constructor(code: string, message: string, options: { retryable: boolean; field?: string; cause?: unknown }) {
    super(code, message, options);
    this.name = 'ClientError';
    this.field = options.field;
  }
}

/** The connection dropped before the answer arrived; the request may or may not have taken effect. */
export const DISCONNECTED = 'client.disconnected';
/** StateEvent.reason of a reconnect after the liveness probe found the server unresponsive. */
export const UNRESPONSIVE = 'unresponsive';
/** The client was closed (by `close()` or a terminal close code). */
export const CLOSED = 'client.closed';
/** The server sent something this SDK cannot make sense of (wrong answer type, undecodable frame). */
export const PROTOCOL = 'client.protocol';
