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
 *
 * Batches (`batch`): the actor layer runs its mailbox turns inside one. Frames pushed meanwhile are
 * queued per socket and written when the batch ends, each socket's frames in one corked write (one
 * syscall instead of one per frame: a group commit of k messages reaches a member's socket as one
 * write). Order per socket is kept: frames written directly (sendFrame, refuse, close) while a socket
 * has queued output join its queue or flush it first. The backpressure rule holds at queue time
 * (buffered + queued bytes) and again after the write.
 *
 * Encoding: a `msg` frame object is encoded once, however many sockets it goes to (the user actors
 * of a shard share one frame object per message of a group fan-out, src/actors/user-actor.ts), and
 * its retries reuse the bytes. Frames are never mutated once pushed.
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
  /** Frames queued by the running batch (ConnectionTable.batch), written when it ends; else null. */
  out: Outbox | null;
}

/** A socket's frames queued during a batch. */
export interface Outbox {
  frames: Uint8Array[];
  types: ServerFrame['t'][];
  /** The socket's buffered amount when the first frame was queued plus the queued bytes. */
  bytes: number;
}

/**
 * Which server frames answer a request and so end it (one per request with an id; `sync.batch`
 * carries the id of a sync that its `synced` ends). Every frame type is listed, so a new one has to
 * be classified: a missed answer leaks a slot of the connection's MAX_INFLIGHT_REQUESTS for good
 * (conv.ok, members.page and receipts.state once did, and 64 group operations locked a connection
 * out of sending).
 */
const ANSWERS: Record<ServerFrame['t'], boolean> = {
  hello: false,
  sent: true,
  msg: false,
  receipt: false,
  'sync.batch': false,
  synced: true,
  'keys.low': false,
  'history.page': true,
  pong: true,
  'presence.state': true,
  presence: false,
  'typing.event': false,
  'conv.ok': true,
  'members.page': true,
  'receipts.state': true,
  error: true,
};

/** The frame answers a request: one of ANSWERS, or an error with the request's id. */
export function isAnswer(frame: ServerFrame): boolean {
  return frame.t === 'error' ? frame.id !== undefined : ANSWERS[frame.t];
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
  /** Nesting depth of `batch`; frames are queued while > 0. */
  private depth = 0;
  /**
   * Sockets with an outbox, in the order they got their first frame, with their states: a socket
   * closed meanwhile must not be touched (uWS throws), its state says so (`ending`).
   */
  private pending: SocketLike[] = [];
  private pendingStates: ConnState[] = [];

  constructor(private readonly maxBackpressureBytes: number) {}

  /**
   * Runs `fn`; frames pushed during it are written when it returns (see the class comment). Nested
   * batches join the outer one. A push never waits for the end: it answers at once from the rule.
   */
  batch(fn: () => void): void {
    this.depth++;
    try {
      fn();
    } finally {
      if (--this.depth === 0) this.flush();
    }
  }

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
    return ws !== undefined && isSessionOf(ws.getUserData(), ref) ? ws : undefined;
  }

  push(ref: SessionRef, frame: ServerFrame): PushResult {
    const ws = this.sockets.get(ref.connId);
    if (ws === undefined) return 'closed';
    const s = ws.getUserData();
    if (!isSessionOf(s, ref)) return 'closed';
    if (s.inflight > 0 && isAnswer(frame)) s.inflight--;
    // Outside a batch no socket has an outbox (the outermost batch wrote them all).
    if (this.depth === 0) return write(ws, frame, this.maxBackpressureBytes);
    // Kept until the batch ends: a copy (see `encode`), except a msg frame's cached bytes.
    const bytes = frame.t === 'msg' ? encode(frame) : new Uint8Array(encodeServerFrame(frame));
    let out = s.out;
    if (out === null) {
      out = s.out = { frames: [], types: [], bytes: ws.getBufferedAmount() };
      this.pending.push(ws);
      this.pendingStates.push(s);
    }
    out.frames.push(bytes);
    out.types.push(frame.t);
    out.bytes += bytes.byteLength;
    if (out.bytes > this.maxBackpressureBytes) {
      // Over the limit already: what is queued would only add to it. The device resyncs.
      s.out = null;
      endSocket(ws, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
      return 'overflow';
    }
    return 'sent';
  }

  close(ref: SessionRef, code: number, reason: string): void {
    const ws = this.find(ref);
    if (ws !== undefined) endSocket(ws, code, reason);
  }

  /** Writes every outbox (end of the outermost batch). */
  private flush(): void {
    const sockets = this.pending;
    const states = this.pendingStates;
    if (sockets.length === 0) return;
    this.pending = [];
    this.pendingStates = [];
    let failed: unknown = null;
    for (let i = 0; i < sockets.length; i++) {
      // One socket's failure (a bug) must not leave the others' frames unwritten.
      try {
        writeOutbox(sockets[i]!, states[i]!, this.maxBackpressureBytes);
      } catch (err) {
        failed ??= err;
      }
    }
    if (failed !== null) throw failed;
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

/**
 * Encoded `msg` frames by frame object (see the class comment). Keyed weakly: an entry lives as long
 * as the frame, which a device's pending deliveries hold until it is acknowledged.
 *
 * Bytes that are kept (cached here, or queued until a batch ends) are a copy: msgpackr returns a
 * view into a buffer it reuses, and in a running node such views were seen overwritten later (the
 * single-node chaos runs' clients got undecodable frames, 31-1372 per scenario, when the views
 * were cached or queued; none with copies). Commit 12bc61e cached views; that was its fault.
 */
const encodedMsgs = new WeakMap<ServerFrame, Uint8Array>();
function encode(frame: ServerFrame): Uint8Array {
  if (frame.t !== 'msg') return encodeServerFrame(frame);
  let bytes = encodedMsgs.get(frame);
  if (bytes === undefined) encodedMsgs.set(frame, (bytes = new Uint8Array(encodeServerFrame(frame))));
  return bytes;
}

/**
 * Writes a socket's outbox in one cork and applies the backpressure rule to the result. Called at
 * the end of a batch, and before anything is written to the socket directly or it is closed.
 */
function writeOutbox(ws: SocketLike, s: ConnState, maxBackpressureBytes: number): void {
  const out = s.out;
  if (out === null || s.ending) return;
  s.out = null;
  let dropped = false;
  let written = 0;
  const frames = out.frames;
  ws.cork(() => {
    for (; written < frames.length && !s.ending; written++) {
      if (ws.send(frames[written]!, true, false) === SEND_DROPPED) {
        dropped = true;
        break;
      }
    }
  });
  countFrames(out.types, written);
  if (s.ending) return;
  const buffered = dropped ? 0 : ws.getBufferedAmount();
  if (buffered > 0) gatewayMetrics.backpressureBytes.observe(buffered);
  if (dropped || buffered > maxBackpressureBytes) endSocket(ws, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
}

/** framesOut for the first `n` of `types`, one counter update per run of one type. */
function countFrames(types: ServerFrame['t'][], n: number): void {
  let i = 0;
  while (i < n) {
    const t = types[i]!;
    let j = i + 1;
    while (j < n && types[j] === t) j++;
    gatewayMetrics.framesOut.inc({ type: t }, j - i);
    i = j;
  }
}

/** The state is `ref`'s open session (the connection id may have been reused by then). */
function isSessionOf(s: ConnState, ref: SessionRef): boolean {
  return !s.ending && s.session !== null && s.session.user === ref.user && s.session.device === ref.device;
}

/** Writes one frame; see the class comment for the backpressure rule. */
export function sendFrame(ws: SocketLike, frame: ServerFrame, maxBackpressureBytes: number): PushResult {
  // Something queued for this socket by a running batch goes first.
  const s = ws.getUserData();
  if (s.out !== null) {
    writeOutbox(ws, s, maxBackpressureBytes);
    if (s.ending) return 'overflow';
  }
  return write(ws, frame, maxBackpressureBytes);
}

function write(ws: SocketLike, frame: ServerFrame, maxBackpressureBytes: number): PushResult {
  const r = ws.send(encode(frame), true, false);
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
  const s = ws.getUserData();
  if (s.out !== null) writeOutbox(ws, s, Number.POSITIVE_INFINITY);
  if (s.ending) return;
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
  // Frames queued before the close go out before it, as they would have without the batch; not
  // to a slow consumer (over its limit already).
  if (s.out !== null) {
    if (code === CLOSE.slowConsumer) s.out = null;
    else writeOutbox(ws, s, Number.POSITIVE_INFINITY);
    if (s.ending) return;
  }
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
