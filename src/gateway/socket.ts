import type uWS from 'uWebSockets.js';
import type { SessionHandler, SessionRef } from '../actors/session.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { LIFETIME_MESSAGE, type VerifyOutcome } from '../auth/verify.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../lib/log.js';
import { errorFrame, MAX_INFLIGHT_REQUESTS, type ClientFrame, type HelloFrame } from '../protocol/client-frames.js';
import { decodeClientFrame } from '../protocol/codec.js';
import { CLOSE, PROTOCOL_ERROR_LIMIT, PROTOCOL_ERROR_WINDOW_S, type CloseCode, type ErrorCode } from '../protocol/codes.js';
import { parseHandshake } from '../protocol/handshake.js';
import { refuse, sendFrame, type ConnectionTable, type ConnState } from './connections.js';
import { hitWindow, rateSpec, takeFrame } from './limits.js';
import { closeLabel, gatewayMetrics, type ConnectionResult } from './metrics.js';
import type { Uws } from './uws.js';

/**
 * The uWS behaviour of `/ws`.
 *
 * Authentication happens right after the upgrade, not before it: the upgrade is always answered
 * synchronously inside uWS's upgrade callback, then the token is verified (HS256 inline, public-key
 * tokens on the main thread's pool) and the session gets `hello` or an `error` frame and a close
 * code. Two reasons: a browser cannot read an HTTP error status from a failed WebSocket, but it can
 * read a close code; and an upgrade answered later from a promise (inside `res.cork`, as uWS asks
 * for asynchronous answers) sometimes lost the fresh socket in this uWS build: its cork epilogue can
 * mistake the upgraded socket for a finished `Connection: close` response and shut it down (seen as
 * an immediate 1006 on about 1 in 300 connections). Frames that arrive before hello (a client
 * should wait for it) are queued, up to EARLY_FRAMES_MAX, and handled after it.
 *
 * Per frame, cheapest check first, each with a documented outcome (docs/PROTOCOL.md):
 * 1. text frame → error bad_frame, close 4503 (the protocol is binary msgpack only);
 * 2. over gateway.maxFrameBytes → error frame_too_large, close 4505. uWS's own maxPayloadLength is
 *    set higher, because a frame over it closes with a bare 1006 that tells the client nothing;
 * 3. no rate token → error rate_limited (frame not processed); more than framesPerSecond rejected
 *    within a second → close 4003;
 * 4. decode and validate → bad_frame closes 4503; unknown_type / invalid_field answer an error frame
 *    and close 4503 past PROTOCOL_ERROR_LIMIT per PROTOCOL_ERROR_WINDOW_S; body_too_large answers.
 *
 * Idle: the gateway's sweep pings a connection silent for half of idleTimeoutS and closes it with
 * 4002 when nothing at all (not even the pong) arrived for idleTimeoutS. uWS's own idle timer is
 * twice that, as a backstop for peers that vanished (its close is abrupt, 1006). A client that answers
 * pings, as every WebSocket stack does, never idles out.
 */
export interface SocketDeps {
  uws: Uws;
  config: GatewayConfig;
  table: ConnectionTable;
  now: () => number;
  log: Logger;
  /** False while draining or before the handler is attached: upgrades get HTTP 503. */
  accepting: () => boolean;
  /** False when this shard holds its share of gateway.maxConnections: upgrades get HTTP 503. */
  hasCapacity: () => boolean;
  verify: TokenVerifier;
  /** auth.clockToleranceS: a session outlives its token's `exp` by this much, as verification allows. */
  clockToleranceS: number;
  newSession(user: string, device: string): SessionRef;
  hello(user: string, device: string): HelloFrame;
  handler(): SessionHandler<ClientFrame>;
}

/** Frames queued per connection while its token is verified; one more closes it with 4503. */
export const EARLY_FRAMES_MAX = 16;

/** Headroom of uWS's frame limit over ours: frames in between get a clean 4505. */
export function uwsMaxPayloadLength(maxFrameBytes: number): number {
  return Math.min(maxFrameBytes * 4, maxFrameBytes + 1024 * 1024);
}

type Refusal = { close: CloseCode; code: ErrorCode; msg: string; result: ConnectionResult };

function refusalOf(outcome: Exclude<VerifyOutcome, { ok: true }>): Refusal {
  switch (outcome.reason) {
    case 'expired':
      return { close: CLOSE.tokenExpired, code: 'unauthorized', msg: 'token expired', result: 'token_expired' };
    case 'missing':
      return { close: CLOSE.missingToken, code: 'unauthorized', msg: 'missing token', result: 'missing_token' };
    case 'invalid':
      return { close: CLOSE.badToken, code: 'unauthorized', msg: 'invalid token', result: 'auth_failed' };
    case 'removed':
      return { close: CLOSE.deviceRemoved, code: 'unauthorized', msg: 'device removed; a token issued after the removal registers it again', result: 'device_removed' };
    case 'lifetime':
      return { close: CLOSE.badToken, code: 'unauthorized', msg: LIFETIME_MESSAGE, result: 'auth_failed' };
  }
}

export interface SocketBehavior extends uWS.WebSocketBehavior<ConnState> {
  /** Sockets open but not yet authenticated (they count against capacity and are closed on drain). */
  readonly unauthenticated: Set<uWS.WebSocket<ConnState>>;
}

export function socketBehavior(d: SocketDeps): SocketBehavior {
  const cfg = d.config;
  const limits = { maxFrameBytes: cfg.maxFrameBytes, maxBodyBytes: cfg.maxBodyBytes };
  // One rate spec per shard; each connection keeps only its counters (ConnState).
  const rate = rateSpec(cfg.framesPerSecond, cfg.framesPerSecond * 2);
  const unauthenticated = new Set<uWS.WebSocket<ConnState>>();

  const counted = (result: ConnectionResult, startedMs: number): void => {
    gatewayMetrics.connectionsTotal.inc({ result });
    gatewayMetrics.upgradeDuration.observe((d.now() - startedMs) / 1000);
  };

  const authenticated = (ws: uWS.WebSocket<ConnState>, s: ConnState, outcome: VerifyOutcome): void => {
    unauthenticated.delete(ws);
    if (s.ending) return counted('aborted', s.startedMs);
    if (!outcome.ok) {
      const r = refusalOf(outcome);
      counted(r.result, s.startedMs);
      return refuse(ws, r.close, r.code, r.msg);
    }
    if (!d.accepting()) {
      counted('not_accepting', s.startedMs);
      return refuse(ws, CLOSE.draining, 'shutting_down', 'the server is draining');
    }
    counted('opened', s.startedMs);
    const nowMs = d.now();
    const session = d.newSession(outcome.user, outcome.device);
    s.session = session;
    s.expiresAtMs = (outcome.exp + d.clockToleranceS) * 1000;
    s.rateTatMs = nowMs;
    s.rateWindowMs = nowMs;
    s.protoWindowMs = nowMs;
    d.table.add(session.connId, ws);
    gatewayMetrics.connections.inc();
    sendFrame(ws, d.hello(session.user, session.device), cfg.maxBackpressureBytes);
    guard(ws, 'opened', () => d.handler().opened(session));
    const early = s.early;
    s.early = null;
    for (const frame of early ?? []) if (!s.ending) onFrame(ws, s, frame);
  };

  return {
    unauthenticated,
    compression: d.uws.DISABLED,
    maxPayloadLength: uwsMaxPayloadLength(cfg.maxFrameBytes),
    maxBackpressure: cfg.maxBackpressureBytes,
    // We close with 4001 ourselves (a documented code) instead of letting uWS drop the socket.
    closeOnBackpressureLimit: 0,
    // Our idle sweep (ConnectionTable.idle) pings at half of idleTimeoutS and closes with 4002 at it;
    // uWS's timer is a backstop for peers that vanished (it closes abruptly, 1006).
    idleTimeout: Math.min(960, Math.ceil((cfg.idleTimeoutS * 2) / 4) * 4),
    sendPingsAutomatically: true,

    upgrade(res, req, context) {
      const startedMs = d.now();
      if (!d.accepting() || !d.hasCapacity()) {
        const result: ConnectionResult = d.accepting() ? 'over_capacity' : 'not_accepting';
        counted(result, startedMs);
        res.writeStatus('503 Service Unavailable').end(result === 'not_accepting' ? 'draining\n' : 'over capacity\n');
        return;
      }
      const authorization = req.getHeader('authorization');
      const hs = parseHandshake(req.getQuery() ?? '', authorization === '' ? undefined : authorization);
      const state: ConnState = {
        session: null,
        refusal: hs.ok ? null : { close: hs.close, code: hs.code, msg: hs.msg },
        token: hs.ok ? hs.token : null,
        early: null,
        startedMs,
        expiresAtMs: 0,
        ending: false,
        rateTatMs: 0,
        rateRejected: 0,
        rateWindowMs: 0,
        protoErrors: 0,
        protoWindowMs: 0,
        lastSeenMs: startedMs,
        pinged: false,
        inflight: 0,
        out: null,
      };
      if (!hs.ok) counted(hs.close === CLOSE.unsupportedVersion ? 'bad_version' : hs.close === CLOSE.missingToken ? 'missing_token' : 'auth_failed', startedMs);
      res.upgrade(state, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
    },

    open(ws) {
      const s = ws.getUserData();
      if (s.refusal !== null) return refuse(ws, s.refusal.close, s.refusal.code, s.refusal.msg);
      const token = s.token!;
      s.token = null;
      unauthenticated.add(ws);
      d.verify(token).then(
        (outcome) => authenticated(ws, s, outcome),
        (err: unknown) => {
          unauthenticated.delete(ws);
          d.log.error({ err }, 'token verification failed');
          counted('verify_error', s.startedMs);
          if (!s.ending) refuse(ws, CLOSE.internalError, 'internal', 'token verification is unavailable; retry later');
        },
      );
    },

    pong(ws) {
      const s = ws.getUserData();
      s.lastSeenMs = d.now();
      s.pinged = false;
    },

    message(ws, message, isBinary) {
      const s = ws.getUserData();
      if (s.ending || s.refusal !== null) return;
      s.lastSeenMs = d.now();
      s.pinged = false;
      if (s.session === null) {
        if ((s.early ??= []).length >= EARLY_FRAMES_MAX) return refuse(ws, CLOSE.protocolViolation, 'bad_frame', 'too many frames before hello');
        // uWS reuses `message` after this handler returns: keep a copy.
        s.early.push(isBinary ? message.slice(0) : new ArrayBuffer(0));
        return;
      }
      if (!isBinary) {
        rejected('text');
        return refuse(ws, CLOSE.protocolViolation, 'bad_frame', 'text frames are not supported; send binary msgpack frames');
      }
      onFrame(ws, s, message);
    },

    drain(ws) {
      gatewayMetrics.backpressureBytes.observe(ws.getBufferedAmount());
    },

    close(ws, code) {
      const s = ws.getUserData();
      s.ending = true;
      unauthenticated.delete(ws);
      gatewayMetrics.closes.inc({ code: closeLabel(code) });
      if (s.session === null || !d.table.remove(s.session.connId)) return;
      gatewayMetrics.connections.dec();
      d.log.debug({ code, connId: s.session.connId }, 'session closed');
      try {
        d.handler().closed(s.session, code);
      } catch (err) {
        d.log.error({ err }, 'session handler threw in closed()');
      }
    },
  };

  /** Limits, decoding and dispatch of one binary frame of an authenticated session. */
  function onFrame(ws: uWS.WebSocket<ConnState>, s: ConnState, message: ArrayBuffer): void {
    if (message.byteLength > cfg.maxFrameBytes) {
      rejected('too_large');
      return refuse(ws, CLOSE.frameTooLarge, 'frame_too_large', `frame of ${message.byteLength} bytes exceeds ${cfg.maxFrameBytes}`);
    }
    const verdict = takeFrame(s, rate, d.now());
    // The codec copies what it keeps (bodies): uWS reuses `message` after the handler returns.
    const decoded = decodeClientFrame(new Uint8Array(message), limits);
    if (verdict !== 'ok') {
      rejected('rate_limited');
      const id = decoded.ok ? ('id' in decoded.frame ? decoded.frame.id : undefined) : decoded.id;
      if (verdict === 'abuse') return refuse(ws, CLOSE.rateLimited, 'rate_limited', 'too many frames rejected as rate_limited', id);
      return sendError(ws, 'rate_limited', `over ${cfg.framesPerSecond} frames per second`, id);
    }
    if (!decoded.ok) {
      gatewayMetrics.framesIn.inc({ type: 'invalid' });
      if (decoded.code === 'bad_frame') return refuse(ws, CLOSE.protocolViolation, 'bad_frame', decoded.msg, decoded.id);
      if (decoded.code === 'frame_too_large') return refuse(ws, CLOSE.frameTooLarge, 'frame_too_large', decoded.msg, decoded.id);
      if (decoded.code !== 'body_too_large' && hitWindow(s, PROTOCOL_ERROR_LIMIT, PROTOCOL_ERROR_WINDOW_S * 1000, d.now())) {
        return refuse(ws, CLOSE.protocolViolation, decoded.code, `${decoded.msg} (over ${PROTOCOL_ERROR_LIMIT} protocol errors)`, decoded.id);
      }
      return sendError(ws, decoded.code, decoded.msg, decoded.id, decoded.field);
    }
    gatewayMetrics.framesIn.inc({ type: decoded.frame.t });
    const frame = decoded.frame;
    if ('id' in frame) {
      // Every request with an id gets exactly one answer (ConnectionTable.push counts them back).
      if (s.inflight >= MAX_INFLIGHT_REQUESTS) {
        rejected('too_many_inflight');
        return sendError(ws, 'too_many_inflight', `more than ${MAX_INFLIGHT_REQUESTS} requests awaiting an answer`, frame.id);
      }
      s.inflight++;
    }
    guard(ws, 'frame', () => d.handler().frame(s.session!, frame));
  }

  function rejected(reason: 'text' | 'too_large' | 'rate_limited' | 'too_many_inflight'): void {
    gatewayMetrics.rejectedFrames.inc({ reason });
  }

  function sendError(ws: uWS.WebSocket<ConnState>, code: ErrorCode, msg: string, id?: number, field?: string): void {
    sendFrame(ws, errorFrame(code, msg, id, field), cfg.maxBackpressureBytes);
  }

  /**
   * A throw from the actor layer is a bug. Left uncaught inside a uWS callback it would crash the
   * shard and every session on it; instead the one session closes with 4004 and the error is logged.
   */
  function guard(ws: uWS.WebSocket<ConnState>, what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      d.log.error({ err, what }, 'session handler threw; closing the session with 4004');
      refuse(ws, CLOSE.internalError, 'internal', 'internal error');
    }
  }
}
