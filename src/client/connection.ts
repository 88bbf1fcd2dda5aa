import type { DackFrame, HelloFrame, ReadFrame, ServerFrame } from '../protocol/client-frames.js';
import { CLOSE, isReconnectable } from '../protocol/codes.js';
import { connectUrl } from '../protocol/handshake.js';
import { Session } from './session.js';
import { fullJitterDelayMs, type BackoffOptions, type Clock, type TimerHandle } from './timing.js';
import { messageBytes, resolveTransport, type ResolvedTransport, type TransportOptions } from './transport.js';
import type { WebSocketLike } from './websocket.js';
import { ClientError, CLOSED, DISCONNECTED, type ClientState, type ClosedEvent, type StateEvent } from './types.js';

/**
 * The connection lifecycle: token, upgrade, hello, reconnect with backoff and full jitter, terminal
 * close codes. Each socket gets a fresh Session; this class decides whether and when there is a next
 * one.
 *
 * Reconnect policy (docs/PROTOCOL.md 3.6 and section 6):
 * - any close that is not 4500-4999 (transport closes included) reconnects after
 *   fullJitterDelayMs(attempt); 4003 (rate limited) adds a fixed floor so a client that flooded
 *   does not come straight back;
 * - the attempt counter resets once a session stayed up for `stableAfterMs` after hello, so a
 *   server that accepts and then drops at once still backs off;
 * - 4501 (token expired) reconnects once when the token comes from a provider (which is asked
 *   again, so it can refresh); a second 4501 before any hello is terminal;
 * - every other 45xx is terminal: `closed` is reported with the code and nothing reconnects.
 *
 * Closes we decide on ourselves are reported as 1006 with the SDK's reason in the `reconnecting`
 * state event: `no hello`, `no pong` (keep-alive), `unresponsive` (the liveness probe of session.ts:
 * requests outstanding, nothing received for responseTimeoutMs, then no frame for pongTimeoutMs).
 */

/** A token, or a provider called before every connection attempt (so it can refresh). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ConnectionOptions {
  /** ws:// or wss:// base URL; `/ws` and `?v=1` are added (a trailing `/ws` is accepted too). */
  url: string;
  token: TokenSource;
  transport: TransportOptions;
  clock: Clock;
  random: () => number;
  backoff: BackoffOptions;
  stableAfterMs: number;
  rateLimitedFloorMs: number;
  helloTimeoutMs: number;
  pingTimeoutMs: number;
  /** 0 disables the liveness probe. */
  responseTimeoutMs: number;
  pongTimeoutMs: number;
}

export interface ConnectionHooks {
  open(hello: HelloFrame, session: Session): void;
  /** A frame that answers no request: msg, receipt, error without id. */
  frame(frame: ServerFrame): void;
  /** An open session ended (a reconnect may follow). Its requests were rejected with DISCONNECTED. */
  down(): void;
  state(event: StateEvent): void;
  closed(event: ClosedEvent): void;
  error(err: ClientError): void;
}

// A close we decide on ourselves (no hello, no pong) is reported like an abnormal transport close.
const LOCAL_ABNORMAL = 1006;

export class Connection {
  readonly #o: ConnectionOptions;
  readonly #hooks: ConnectionHooks;
  readonly #base: string;
  #state: ClientState = 'idle';
  #transport: ResolvedTransport | undefined;
  #socket: WebSocketLike | undefined;
  #session: Session | undefined;
  #open = false;
  #attempt = 0;
  #refreshedAfterExpiry = false;
  #timer: TimerHandle | undefined;
  #stableTimer: TimerHandle | undefined;
  #openWaiters: Array<{ resolve: () => void; reject: (err: ClientError) => void }> = [];

  constructor(o: ConnectionOptions, hooks: ConnectionHooks) {
    this.#o = o;
    this.#hooks = hooks;
    // The documented URL form is the server origin (`ws://host:8080`); people also paste the full
    // endpoint (`ws://host:8080/ws`), so a trailing /ws is dropped before connectUrl adds it back.
    const url = new URL(o.url);
    url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/ws$/, '');
    this.#base = url.toString();
    connectUrl(this.#base); // throws now, in the constructor, on a URL it cannot use
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The open session, if any (hello received and not closed since). */
  get session(): Session | undefined {
    return this.#open ? this.#session : undefined;
  }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#setState({ state: 'connecting' });
    void this.#connect();
  }

  /** Resolves at the next hello (at once when open); rejects when the client closes for good. */
  whenOpen(): Promise<Session> {
    if (this.#open && this.#session !== undefined) return Promise.resolve(this.#session);
    if (this.#state === 'closed') return Promise.reject(new ClientError(CLOSED, 'client closed', { retryable: false }));
    return new Promise<void>((resolve, reject) => this.#openWaiters.push({ resolve, reject })).then(() => this.whenOpen());
  }

  /** Sends a frame without an answer when a session is open; false when it was not sent. */
  post(frame: DackFrame | ReadFrame): boolean {
    const session = this.session;
    if (session === undefined) return false;
    session.post(frame);
    return true;
  }

  /** Closes for good (no reconnect). */
  stop(code = 1000, reason = 'client closed'): void {
    if (this.#state === 'closed') return;
    this.#endSocket(new ClientError(CLOSED, reason, { retryable: false }));
    this.#terminal(code, reason);
  }

  async #connect(): Promise<void> {
    this.#timer = undefined;
    let token: string;
    try {
      this.#transport ??= await resolveTransport(this.#o.transport);
      token = typeof this.#o.token === 'function' ? await this.#o.token() : this.#o.token;
    } catch (err) {
      if (this.#state === 'closed') return;
      this.#hooks.error(new ClientError('client.connect', `cannot connect: ${err instanceof Error ? err.message : String(err)}`, { retryable: true, cause: err }));
      return this.#retry(LOCAL_ABNORMAL);
    }
    if (this.#state === 'closed') return;
    const url = connectUrl(this.#base, this.#transport.headers ? undefined : token);
    let socket: WebSocketLike;
    try {
      socket = this.#transport.open(url, { authorization: `Bearer ${token}` });
      socket.binaryType = 'arraybuffer';
    } catch (err) {
      this.#hooks.error(new ClientError('client.connect', `cannot open a socket: ${err instanceof Error ? err.message : String(err)}`, { retryable: true, cause: err }));
      return this.#retry(LOCAL_ABNORMAL);
    }
    const session: Session = new Session(
      socket,
      this.#o.clock,
      {
        hello: (hello) => this.#onHello(session, hello),
        frame: (frame) => this.#hooks.frame(frame),
        fail: (reason) => this.#onClose(socket, LOCAL_ABNORMAL, reason),
        error: (err) => this.#hooks.error(err),
      },
      { pingTimeoutMs: this.#o.pingTimeoutMs, responseTimeoutMs: this.#o.responseTimeoutMs, pongTimeoutMs: this.#o.pongTimeoutMs },
    );
    this.#socket = socket;
    this.#session = session;
    socket.onmessage = (event) => session.receive(messageBytes(event.data));
    socket.onclose = (event) => this.#onClose(socket, event.code, event.reason);
    socket.onerror = () => undefined; // a close event follows every error
    this.#timer = this.#o.clock.setTimeout(() => this.#onClose(socket, LOCAL_ABNORMAL, 'no hello'), this.#o.helloTimeoutMs);
  }

  #onHello(session: Session, hello: HelloFrame): void {
    if (session !== this.#session || this.#open) return;
    this.#clearTimers();
    this.#open = true;
    this.#refreshedAfterExpiry = false;
    this.#stableTimer = this.#o.clock.setTimeout(() => {
      this.#stableTimer = undefined;
      this.#attempt = 0;
    }, this.#o.stableAfterMs);
    this.#setState({ state: 'open' });
    this.#hooks.open(hello, session);
    for (const waiter of this.#openWaiters.splice(0)) waiter.resolve();
  }

  #onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.#socket) return;
    const wasOpen = this.#open;
    this.#endSocket(new ClientError(DISCONNECTED, `connection closed (${code}${reason ? ` ${reason}` : ''})`, { retryable: true }));
    if (wasOpen) this.#hooks.down();
    if (this.state === 'closed') return; // a down() hook may have stopped the client
    if (isReconnectable(code)) return this.#retry(code, reason);
    if (code === CLOSE.tokenExpired && typeof this.#o.token === 'function' && !this.#refreshedAfterExpiry) {
      this.#refreshedAfterExpiry = true;
      return this.#retry(code, reason);
    }
    this.#terminal(code, reason);
  }

  #retry(code: number, reason?: string): void {
    const floorMs = code === CLOSE.rateLimited ? this.#o.rateLimitedFloorMs : 0;
    const delayMs = floorMs + fullJitterDelayMs(this.#attempt, this.#o.backoff, this.#o.random);
    this.#setState({ state: 'reconnecting', attempt: this.#attempt, delayMs, code, ...(reason ? { reason } : {}) });
    this.#attempt++;
    this.#timer = this.#o.clock.setTimeout(() => void this.#connect(), delayMs);
  }

  /** Detaches and closes the current socket, ending its session with `err`. */
  #endSocket(err: ClientError): void {
    this.#clearTimers();
    const socket = this.#socket;
    const session = this.#session;
    this.#socket = this.#session = undefined;
    this.#open = false;
    if (socket !== undefined) {
      socket.onmessage = socket.onclose = null;
      // Keep an error handler: `ws` throws when an error is emitted with no listener, and closing
      // a socket that is still connecting emits one.
      socket.onerror = () => undefined;
      try {
        socket.close(1000);
      } catch {
        // already closed
      }
    }
    session?.end(err);
  }

  #terminal(code: number, reason: string): void {
    this.#clearTimers();
    this.#setState({ state: 'closed', code });
    const err = new ClientError(CLOSED, `client closed (${code}${reason ? ` ${reason}` : ''})`, { retryable: false });
    for (const waiter of this.#openWaiters.splice(0)) waiter.reject(err);
    this.#hooks.closed({ code, reason });
  }

  #clearTimers(): void {
    for (const handle of [this.#timer, this.#stableTimer]) if (handle !== undefined) this.#o.clock.clearTimeout(handle);
    this.#timer = this.#stableTimer = undefined;
  }

  #setState(event: StateEvent): void {
    this.#state = event.state;
    this.#hooks.state(event);
  }
}
