/**
 * The ticks client SDK (browser-safe entry). On Node the `ws` package is used by default; in a
 * browser the global WebSocket.
 */
export { TicksClient, type ClientOptions, type ConvResult, type CreateOptions, type HistoryPage, type MembersPage, type ReceiptsState, type SendTarget } from './client.js';
export type { TokenSource } from './connection.js';
export { TypedEmitter, type Listener } from './emitter.js';
export { MemoryOutboxStorage, newClientMessageId, type OutboxRecord, type OutboxStorage } from './outbox.js';
export type { ConversationReceipts, PeerProgress } from './receipts.js';
export { DEFAULT_BACKOFF, fullJitterDelayMs, systemClock, type BackoffOptions, type Clock, type TimerHandle } from './timing.js';
export type { WebSocketConstructor, WebSocketFactory, WebSocketLike } from './websocket.js';
export {
  ClientError,
  CLOSED,
  DISCONNECTED,
  PROTOCOL,
  UNRESPONSIVE,
  type ClientEvents,
  type ClientState,
  type ClosedEvent,
  type ErrorEvent,
  type GapExpiredEvent,
  type Message,
  type MessageSource,
  type ReceiptEvent,
  type SendFailedEvent,
  type SendResult,
  type SentEvent,
  type StateEvent,
  type SyncedEvent,
  type KeysLowEvent,
} from './types.js';
