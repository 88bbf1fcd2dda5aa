import type {
  ClientFrame,
  DackFrame,
  HelloFrame,
  HistoryFrame,
  HistoryPageFrame,
  PingFrame,
  PongFrame,
  ReadFrame,
  SendFrame,
  SentFrame,
  ServerFrame,
  SyncBatchFrame,
  SyncedFrame,
  SyncFrame,
} from '../protocol/client-frames.js';
import type {
  ConvOkFrame,
  ConvOpFrame,
  MembersFrame,
  MembersPageFrame,
  ReceiptsFrame,
  ReceiptsStateFrame,
} from '../protocol/client-conv-frames.js';
import { MAX_INFLIGHT_REQUESTS } from '../protocol/client-frames.js';
import { decodeServerFrame, encodeClientFrame } from '../protocol/codec.js';
import type { Clock, TimerHandle } from './timing.js';
import type { WebSocketLike } from './websocket.js';
import { ClientError, PROTOCOL, UNRESPONSIVE } from './types.js';

/**
 * One WebSocket session, from the upgrade to its close: request ids and answers, the in-flight
 * limit, frame pacing and keep-alive. It never reconnects (connection.ts does); when it ends, every
 * request it holds is rejected with the error given to `end`, and the caller decides what to retry.
 */

type WithoutId<F> = F extends unknown ? Omit<F, 'id'> : never;
export type SendRequest = WithoutId<SendFrame>;
export type SyncRequest = WithoutId<SyncFrame>;
export type HistoryRequest = WithoutId<HistoryFrame>;
export type ConvOpRequest = WithoutId<ConvOpFrame>;
export type RequestFrame = SendRequest | SyncRequest | HistoryRequest | WithoutId<PingFrame> | ConvOpRequest | WithoutId<MembersFrame> | WithoutId<ReceiptsFrame>;

/** The answer frame type of each request type. */
const ANSWER = {
  send: 'sent',
  sync: 'synced',
  history: 'history.page',
  ping: 'pong',
  'conv.create': 'conv.ok',
  'member.add': 'conv.ok',
  'member.remove': 'conv.ok',
  'member.role': 'conv.ok',
  'conv.leave': 'conv.ok',
  'conv.join': 'conv.ok',
  'conv.meta': 'conv.ok',
  members: 'members.page',
  receipts: 'receipts.state',
} as const satisfies Record<RequestFrame['t'], ServerFrame['t']>;

export interface SessionHooks {
  hello(hello: HelloFrame): void;
  /** A frame that answers no request of this session (msg, receipt, error without id, ...). */
  frame(frame: ServerFrame): void;
  /** The session is unusable (no pong): the owner closes the socket. */
  fail(reason: string): void;
  error(err: ClientError): void;
}

export interface SessionTimeouts {
  /** Keep-alive: a ping sent after idleTimeoutS/2 without sending fails the session when unanswered this long. */
  pingTimeoutMs: number;
  /** Liveness: requests outstanding and no frame at all received this long: probe with a ping. 0 disables. */
  responseTimeoutMs: number;
  /** Liveness: after the probe, fail the session ('unresponsive') when no frame arrives this long. */
  pongTimeoutMs: number;
}

interface Pending {
  expect: ServerFrame['t'];
  resolve(frame: ServerFrame): void;
  reject(err: ClientError): void;
  progress: ((frame: SyncBatchFrame) => void) | undefined;
}

interface Waiting {
  frame: RequestFrame;
  pending: Pending;
}

// Before hello says otherwise: the protocol's defaults (docs/PROTOCOL.md section 4).
const DEFAULT_FRAMES_PER_SECOND = 50;

export class Session {
  readonly #socket: WebSocketLike;
  readonly #clock: Clock;
  readonly #hooks: SessionHooks;
  readonly #timeouts: SessionTimeouts;
  readonly #pending = new Map<number, Pending>();
  readonly #waiting: Waiting[] = [];
  #nextId = 1;
  #ended = false;
  #maxInflight = MAX_INFLIGHT_REQUESTS;
  // Token bucket mirroring the server's (refilled at framesPerSecond). The server allows bursts of
  // twice that; we allow one times, so a flushed outbox never trips rate_limited or close 4003.
  #fps = DEFAULT_FRAMES_PER_SECOND;
  #tokens = DEFAULT_FRAMES_PER_SECOND;
  #refilledAtMs: number;
  #outq: Uint8Array[] = [];
  #drainTimer: TimerHandle | undefined;
  #lastSentMs: number;
  #idleMs = 0;
  #keepaliveTimer: TimerHandle | undefined;
  #pingTimer: TimerHandle | undefined;
  // Liveness (see #checkLiveness): one timer per session, never touched by receive().
  #received = 0;
  #lastReceivedMs: number;
  #busySinceMs: number;
  #livenessTimer: TimerHandle | undefined;
  /** `#received` when the liveness probe went out; undefined when no probe is outstanding. */
  #probeReceived: number | undefined;

  constructor(socket: WebSocketLike, clock: Clock, hooks: SessionHooks, timeouts: SessionTimeouts) {
    this.#socket = socket;
    this.#clock = clock;
    this.#hooks = hooks;
    this.#timeouts = timeouts;
    this.#refilledAtMs = this.#lastSentMs = this.#lastReceivedMs = this.#busySinceMs = clock.now();
  }

  get inflight(): number {
    return this.#pending.size + this.#waiting.length;
  }

  request(frame: SendRequest): Promise<SentFrame>;
  request(frame: SyncRequest, progress: (batch: SyncBatchFrame) => void): Promise<SyncedFrame>;
  request(frame: HistoryRequest): Promise<HistoryPageFrame>;
  request(frame: WithoutId<PingFrame>): Promise<PongFrame>;
  request(frame: ConvOpRequest): Promise<ConvOkFrame>;
  request(frame: WithoutId<MembersFrame>): Promise<MembersPageFrame>;
  request(frame: WithoutId<ReceiptsFrame>): Promise<ReceiptsStateFrame>;
  request(frame: RequestFrame, progress?: (batch: SyncBatchFrame) => void): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      if (this.#ended) return reject(new ClientError(PROTOCOL, 'session ended', { retryable: true }));
      const pending: Pending = { expect: ANSWER[frame.t], resolve, reject, progress };
      if (this.inflight === 0) this.#busySinceMs = this.#clock.now();
      if (this.#pending.size >= this.#maxInflight) this.#waiting.push({ frame, pending });
      else this.#dispatch(frame, pending);
      this.#checkLiveness();
    });
  }

  /** A frame without an answer (dack, read). */
  post(frame: DackFrame | ReadFrame): void {
    if (!this.#ended) this.#transmit(frame);
  }

  receive(bytes: Uint8Array | undefined): void {
    if (this.#ended) return;
    // Any frame, even one we cannot decode, proves the server and the path are alive.
    this.#received++;
    this.#lastReceivedMs = this.#clock.now();
    if (bytes === undefined) {
      this.#hooks.error(new ClientError(PROTOCOL, 'server sent a text message', { retryable: false }));
      return;
    }
    const decoded = decodeServerFrame(bytes);
    if (!decoded.ok) {
      // unknown_type is a frame type from a newer server within version 1: ignored by design.
      if (decoded.code !== 'unknown_type') {
        this.#hooks.error(new ClientError(PROTOCOL, `undecodable server frame: ${decoded.msg}`, { retryable: false }));
      }
      return;
    }
    const frame = decoded.frame;
    if (frame.t === 'hello') return this.#onHello(frame);
    const id = 'id' in frame ? frame.id : undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (pending === undefined || id === undefined) return this.#hooks.frame(frame);
    if (frame.t === 'sync.batch' && pending.progress !== undefined) return pending.progress(frame);
    this.#pending.delete(id);
    if (frame.t === 'error') {
      pending.reject(new ClientError(frame.code, frame.msg, { retryable: frame.retry, field: frame.field }));
    } else if (frame.t === pending.expect) {
      pending.resolve(frame);
    } else {
      pending.reject(new ClientError(PROTOCOL, `request ${id} answered by ${frame.t}, expected ${pending.expect}`, { retryable: true }));
    }
    this.#pump();
  }

  /** Ends the session: timers stop and every request still held is rejected with `err`. */
  end(err: ClientError): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const handle of [this.#drainTimer, this.#keepaliveTimer, this.#pingTimer, this.#livenessTimer]) {
      if (handle !== undefined) this.#clock.clearTimeout(handle);
    }
    this.#outq = [];
    const held = [...this.#pending.values(), ...this.#waiting.map((w) => w.pending)];
    this.#pending.clear();
    this.#waiting.length = 0;
    for (const p of held) p.reject(err);
  }

  #onHello(hello: HelloFrame): void {
    const l = hello.limits;
    if (l.maxInflightRequests >= 1) this.#maxInflight = l.maxInflightRequests;
    if (l.framesPerSecond >= 1) this.#fps = this.#tokens = l.framesPerSecond;
    this.#idleMs = l.idleTimeoutS * 1000;
    this.#scheduleKeepalive();
    this.#hooks.hello(hello);
    this.#pump();
  }

  #dispatch(frame: RequestFrame, pending: Pending): void {
    // Ids are unique among this session's unanswered requests; a new session starts again at 1.
    const id = this.#nextId++;
    this.#pending.set(id, pending);
    this.#transmit({ ...frame, id } as ClientFrame);
  }

  #pump(): void {
    while (!this.#ended && this.#waiting.length > 0 && this.#pending.size < this.#maxInflight) {
      const next = this.#waiting.shift()!;
      this.#dispatch(next.frame, next.pending);
    }
  }

  #transmit(frame: ClientFrame): void {
    const bytes = encodeClientFrame(frame);
    if (this.#outq.length === 0 && this.#takeToken()) this.#write(bytes);
    else {
      this.#outq.push(bytes);
      this.#scheduleDrain();
    }
  }

  #write(bytes: Uint8Array): void {
    this.#lastSentMs = this.#clock.now();
    try {
      this.#socket.send(bytes);
    } catch (err) {
      this.#hooks.fail(`send failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #takeToken(): boolean {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#fps, this.#tokens + ((now - this.#refilledAtMs) * this.#fps) / 1000);
    this.#refilledAtMs = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #scheduleDrain(): void {
    if (this.#drainTimer !== undefined || this.#ended) return;
    const waitMs = Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / this.#fps));
    this.#drainTimer = this.#clock.setTimeout(() => {
      this.#drainTimer = undefined;
      while (!this.#ended && this.#outq.length > 0 && this.#takeToken()) this.#write(this.#outq.shift()!);
      if (this.#outq.length > 0) this.#scheduleDrain();
    }, waitMs);
  }

  // The server closes a connection it heard nothing from for idleTimeoutS (4002); a client that sent
  // nothing for half that time pings (docs/PROTOCOL.md 3.6). A missing pong means a dead path that
  // TCP may take minutes to notice, so the session fails and the owner reconnects.
  #scheduleKeepalive(): void {
    if (this.#idleMs <= 0 || this.#ended) return;
    const halfMs = this.#idleMs / 2;
    // At least a second apart, so an outstanding ping (a pingTimeoutMs longer than halfMs) cannot spin.
    const dueMs = Math.max(Math.min(halfMs, 1000), this.#lastSentMs + halfMs - this.#clock.now());
    this.#keepaliveTimer = this.#clock.setTimeout(() => {
      this.#keepaliveTimer = undefined;
      if (this.#clock.now() - this.#lastSentMs >= halfMs && this.#pingTimer === undefined) this.#ping();
      this.#scheduleKeepalive();
    }, dueMs);
  }

  #ping(): void {
    this.#pingTimer = this.#clock.setTimeout(() => this.#hooks.fail('no pong'), this.#timeouts.pingTimeoutMs);
    // Any answer, even an error (rate_limited), proves the path is alive.
    const answered = (): void => {
      if (this.#pingTimer !== undefined) this.#clock.clearTimeout(this.#pingTimer);
      this.#pingTimer = undefined;
    };
    this.request({ t: 'ping' }).then(answered, answered);
  }

  // Liveness: a frozen node (SIGSTOP) or a half-open TCP path keeps the socket open and answers
  // nothing, and the keep-alive above never fires while we keep sending. So while requests are
  // outstanding and nothing at all was received for responseTimeoutMs, we ping; when no frame arrives
  // within a further pongTimeoutMs, the session fails and the owner reconnects (the outbox resends
  // under the same cmids, which the server dedupes). One timer per session: receive() only bumps a
  // counter and a timestamp, and the timer re-arms itself for the remaining time when it fires.
  #checkLiveness(): void {
    const { responseTimeoutMs, pongTimeoutMs } = this.#timeouts;
    if (responseTimeoutMs <= 0 || this.#ended || this.#livenessTimer !== undefined) return;
    if (this.#probeReceived !== undefined) {
      if (this.#received === this.#probeReceived) return this.#hooks.fail(UNRESPONSIVE);
      this.#probeReceived = undefined; // answered (by the pong or by any other frame)
    }
    if (this.inflight === 0) return; // the next request arms the timer again
    const now = this.#clock.now();
    const dueMs = Math.max(this.#lastReceivedMs, this.#busySinceMs) + responseTimeoutMs - now;
    if (dueMs > 0) return this.#armLiveness(dueMs);
    this.#probeReceived = this.#received;
    this.#armLiveness(pongTimeoutMs); // before the ping, whose request() must not re-arm
    this.request({ t: 'ping' }).catch(() => undefined);
  }

  #armLiveness(ms: number): void {
    this.#livenessTimer = this.#clock.setTimeout(() => {
      this.#livenessTimer = undefined;
      this.#checkLiveness();
    }, ms);
  }
}
