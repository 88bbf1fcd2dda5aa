import type { ConnectionSink, PushResult, SessionRef } from '../actors/session.js';
import { errorFrame, type ServerFrame } from '../protocol/client-frames.js';
import { encodeServerFrame } from '../protocol/codec.js';
import { CLOSE, CLOSE_REASONS, type CloseCode, type ErrorCode } from '../protocol/codes.js';
import type { ProtocolErrorFields, RateFields } from './limits.js';
import { gatewayMetrics } from './metrics.js';

/**
 * The sockets of one shard and the gateway's side of the actor boundary (ConnectionSink).
 *
 * Backpressure: uWS buffers what the kernel does not take. `send` returns 1 (written), 0 (buffered)
 * or 2 (dropped: the buffer was already past `maxBackpressure`). A frame is never dropped silently:
 * when the buffer passes gateway.maxBackpressureBytes (after a buffered send, or when uWS dropped the
 * frame) the socket is closed with 4001 (slow consumer) and the caller hears 'overflow'; the device
 * resyncs from its cursors when it reconnects.
 */

/**
 * Per-connection state, stored as the uWS socket's user data. A node holds hundreds of thousands, so
 * it is one flat object of small fields: the rate and protocol-error counters are fields here
 * (limits.ts), not objects of their own; the limits themselves are shared per shard.
 */
export interface ConnState extends RateFields, ProtocolErrorFields {
  /** The authenticated session; null until the token is verified (and forever on a refused socket). */
  session: SessionRef | null;
  /** Why the connection is refused: sent as an error frame, then the socket closes with `close`. */
  refusal: { close: CloseCode; code: ErrorCode; msg: string } | null;
  /** The token to verify once the socket is open; cleared when verification starts. */
  token: string | null;
  /** Frames that arrived while the token was being verified (bounded); replayed after hello. */
  early: ArrayBuffer[] | null;
  /** When the upgrade request arrived (ms), for the upgrade-duration metric. */
  startedMs: number;
  /** When the token stops being valid (ms, `exp` plus the clock tolerance); 0 before authentication. */
  expiresAtMs: number;
  /** Set once the gateway decided to close or the socket closed: later frames and pushes are ignored. */
  ending: boolean;
  /** Last time anything arrived (a frame or a pong), ms; the idle sweep pings, then closes with 4002. */
  lastSeenMs: number;
  /** A ping was sent since lastSeenMs. */
  pinged: boolean;
  /** Requests (send, sync, history, ping) not answered yet; bounded by MAX_INFLIGHT_REQUESTS. */
  inflight: number;
}

/** Server frames that answer a request and so end it: its `sent`, `synced`, `history.page`, `pong` or `error`. */
export function isAnswer(frame: ServerFrame): boolean {
  switch (frame.t) {
    case 'sent':
    case 'synced':
    case 'history.page':
    case 'pong':
    case 'presence.state':
      return true;
    case 'error':
      return frame.id !== undefined;
    default:
      return false;
  }
}

/** The part of a uWS WebSocket the table uses (a fake in unit tests). */
export interface SocketLike {
  send(message: Uint8Array, isBinary?: boolean, compress?: boolean): number;
  end(code?: number, shortMessage?: string): void;
  getBufferedAmount(): number;
  getUserData(): ConnState;
  cork(cb: () => void): unknown;
  ping?(message?: string): number;
  /** uWS topics (channel delivery, src/gateway/topics.ts). */
  subscribe?(topic: string): boolean;
  unsubscribe?(topic: string): boolean;
  /** Publishes to a topic's subscribers except this socket. */
  publish?(topic: string, message: Uint8Array, isBinary?: boolean, compress?: boolean): boolean;
}

const SEND_WRITTEN = 1;
const SEND_DROPPED = 2;

export class ConnectionTable implements ConnectionSink<ServerFrame> {
  private readonly sockets = new Map<number, SocketLike>();

  constructor(private readonly maxBackpressureBytes: number) {}

  get size(): number {
    return this.sockets.size;
  }

  add(connId: number, ws: SocketLike): void {
    this.sockets.set(connId, ws);
  }

  /** Called from the socket's close handler; true when the connection was registered. */
  remove(connId: number): boolean {
    return this.sockets.delete(connId);
  }

  /** The live socket of `ref`, checking that the id still names the same device's connection. */
  find(ref: SessionRef): SocketLike | undefined {
    const ws = this.sockets.get(ref.connId);
    if (ws === undefined) return undefined;
    const s = ws.getUserData();
    if (s.ending || s.session === null || s.session.user !== ref.user || s.session.device !== ref.device) return undefined;
    return ws;
  }

  push(ref: SessionRef, frame: ServerFrame): PushResult {
    const ws = this.find(ref);
    if (ws === undefined) return 'closed';
    if (isAnswer(frame)) {
      const s = ws.getUserData();
      if (s.inflight > 0) s.inflight--;
    }
    return sendFrame(ws, frame, this.maxBackpressureBytes);
  }

  close(ref: SessionRef, code: number, reason: string): void {
    const ws = this.find(ref);
    if (ws !== undefined) endSocket(ws, code, reason);
  }

  /**
   * Closes sessions whose token expired (4501 after an `unauthorized` error frame, as
   * CLOSE.tokenExpired documents). Called by a periodic sweep: one pass over the table every few
   * seconds costs less than a timer per connection.
   */
  expire(nowMs: number): number {
    let n = 0;
    for (const ws of [...this.sockets.values()]) {
      const s = ws.getUserData();
      if (s.expiresAtMs > 0 && s.expiresAtMs <= nowMs && !s.ending) {
        refuse(ws, CLOSE.tokenExpired, 'unauthorized', 'token expired');
        n++;
      }
    }
    return n;
  }

  /**
   * Idle sweep: a session silent for half of `idleTimeoutMs` gets a WebSocket ping (every client
   * stack answers with a pong, which counts as activity); one silent for the whole of it is closed
   * with 4002, so a live but stuck client learns why. uWS's own idle timer is set well above this and
   * only catches peers that vanished without a trace. The same pass closes (4001) sockets whose
   * buffer stays over the backpressure limit: uWS topic publishes skip them silently.
   */
  idle(nowMs: number, idleTimeoutMs: number): number {
    let n = 0;
    for (const ws of [...this.sockets.values()]) {
      const s = ws.getUserData();
      if (s.ending) continue;
      const silentMs = nowMs - s.lastSeenMs;
      // uWS skips a socket over maxBackpressure when it publishes to a topic (channel posts), and
      // says so to nobody: a socket that stays over the limit is closed as a slow consumer here,
      // like a direct send over the limit, so the device reconnects and catches up by sync.
      if (ws.getBufferedAmount() > this.maxBackpressureBytes) {
        endSocket(ws, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
        n++;
        continue;
      }
      if (silentMs >= idleTimeoutMs) {
        endSocket(ws, CLOSE.idleTimeout, CLOSE_REASONS[CLOSE.idleTimeout]);
        n++;
      } else if (silentMs >= idleTimeoutMs / 2 && !s.pinged) {
        s.pinged = true;
        ws.ping?.();
      }
    }
    return n;
  }

  /** Closes every socket with `code` (drain: 4000). The close handlers run synchronously. */
  closeAll(code: CloseCode): void {
    for (const ws of [...this.sockets.values()]) endSocket(ws, code, CLOSE_REASONS[code]);
  }
}

/** Writes one frame; see the class comment for the backpressure rule. */
export function sendFrame(ws: SocketLike, frame: ServerFrame, maxBackpressureBytes: number): PushResult {
  const r = ws.send(encodeServerFrame(frame), true, false);
  if (r === SEND_WRITTEN) {
    gatewayMetrics.framesOut.inc({ type: frame.t });
    return 'sent';
  }
  if (r === SEND_DROPPED) {
    endSocket(ws, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
    return 'overflow';
  }
  gatewayMetrics.framesOut.inc({ type: frame.t });
  const buffered = ws.getBufferedAmount();
  gatewayMetrics.backpressureBytes.observe(buffered);
  if (buffered > maxBackpressureBytes) {
    endSocket(ws, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
    return 'overflow';
  }
  return 'buffered';
}

/** Sends an error frame, then closes with `code`, in one cork (one syscall). */
export function refuse(ws: SocketLike, code: CloseCode, error: ErrorCode, msg: string, id?: number): void {
  if (ws.getUserData().ending) return;
  ws.cork(() => {
    ws.send(encodeServerFrame(errorFrame(error, msg, id)), true, false);
    gatewayMetrics.framesOut.inc({ type: 'error' });
    endSocket(ws, code, CLOSE_REASONS[code]);
  });
}

/** Closes once (idempotent). uWS runs the close handler synchronously inside `end`. */
export function endSocket(ws: SocketLike, code: number, reason: string): void {
  const s = ws.getUserData();
  if (s.ending) return;
  s.ending = true;
  ws.end(code, shortReason(reason));
}

/** A close reason is at most 123 bytes of UTF-8; longer ones are cut (on a character boundary). */
export function shortReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let out = '';
  for (const ch of reason) {
    if (Buffer.byteLength(out + ch) > 123) break;
    out += ch;
  }
  return out;
}
