import type uWS from 'uWebSockets.js';
import type { SessionHandler, SessionRef } from '../actors/session.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { VerifyOutcome } from '../auth/verify.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../lib/log.js';
import { errorFrame, type ClientFrame, type HelloFrame } from '../protocol/client-frames.js';
import { decodeClientFrame } from '../protocol/codec.js';
import { CLOSE, PROTOCOL_ERROR_LIMIT, PROTOCOL_ERROR_WINDOW_S, type CloseCode, type ErrorCode } from '../protocol/codes.js';
import { parseHandshake } from '../protocol/handshake.js';
import { refuse, sendFrame, type ConnectionTable, type ConnState } from './connections.js';
import { FrameRateLimiter, WindowCounter } from './limits.js';
import { closeLabel, gatewayMetrics, type ConnectionResult } from './metrics.js';
import type { Uws } from './uws.js';

/**
 * The uWS behaviour of `/ws`: upgrade with authentication, then per-frame limits in this order,
 * cheapest first, each with a documented outcome (docs/PROTOCOL.md):
 *
 * 1. text frame → error bad_frame, close 4503 (the protocol is binary msgpack only);
 * 2. over gateway.maxFrameBytes → error frame_too_large, close 4505. uWS's own maxPayloadLength is
 *    set higher, because a frame over it closes with a bare 1006 that tells the client nothing;
 * 3. no rate token → error rate_limited (frame not processed); more than framesPerSecond rejected
 *    within a second → close 4003;
 * 4. decode and validate → bad_frame closes 4503; unknown_type / invalid_field answer an error frame
 *    and close 4503 past PROTOCOL_ERROR_LIMIT per PROTOCOL_ERROR_WINDOW_S; body_too_large answers.
 *
 * Idle: uWS closes a socket silent for idleTimeoutS (rounded up to a multiple of 4, as uWS requires)
 * after an automatic ping went unanswered for 8 more seconds. That close is abrupt (no close frame):
 * the peer is presumed gone. A client that answers pings, as every WebSocket stack does, never idles out.
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
  refusalOf(outcome: Exclude<VerifyOutcome, { ok: true }>): { close: CloseCode; code: ErrorCode; msg: string; result: ConnectionResult };
  newSession(user: string, device: string): SessionRef;
  hello(user: string, device: string): HelloFrame;
  handler(): SessionHandler<ClientFrame>;
}

/** Headroom of uWS's frame limit over ours: frames in between get a clean 4505. */
export function uwsMaxPayloadLength(maxFrameBytes: number): number {
  return Math.min(maxFrameBytes * 4, maxFrameBytes + 1024 * 1024);
}

function newState(session: SessionRef | null, refusal: ConnState['refusal']): ConnState {
  return { session, refusal, ending: false, limiter: null, protocolErrors: null };
}

export function socketBehavior(d: SocketDeps): uWS.WebSocketBehavior<ConnState> {
  const cfg = d.config;
  const limits = { maxFrameBytes: cfg.maxFrameBytes, maxBodyBytes: cfg.maxBodyBytes };

  return {
    compression: d.uws.DISABLED,
    maxPayloadLength: uwsMaxPayloadLength(cfg.maxFrameBytes),
    maxBackpressure: cfg.maxBackpressureBytes,
    // We close with 4001 ourselves (a documented code) instead of letting uWS drop the socket.
    closeOnBackpressureLimit: 0,
    idleTimeout: Math.ceil(cfg.idleTimeoutS / 4) * 4,
    sendPingsAutomatically: true,

    upgrade(res, req, context) {
      const startedMs = d.now();
      // Everything from `req` must be read now: it is invalid once this function returns.
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const authorization = req.getHeader('authorization');
      const query = req.getQuery() ?? '';

      const answer = (state: ConnState | null, result: ConnectionResult): void => {
        gatewayMetrics.connectionsTotal.inc({ result });
        gatewayMetrics.upgradeDuration.observe((d.now() - startedMs) / 1000);
        res.cork(() => {
          if (state === null) res.writeStatus('503 Service Unavailable').end(result === 'not_accepting' ? 'draining\n' : 'over capacity\n');
          else res.upgrade(state, key, protocol, extensions, context);
        });
      };
      if (!d.accepting()) return answer(null, 'not_accepting');
      if (!d.hasCapacity()) return answer(null, 'over_capacity');

      const hs = parseHandshake(query, authorization === '' ? undefined : authorization);
      if (!hs.ok) {
        const result: ConnectionResult = hs.close === CLOSE.unsupportedVersion ? 'bad_version' : hs.close === CLOSE.missingToken ? 'missing_token' : 'auth_failed';
        return answer(newState(null, { close: hs.close, code: hs.code, msg: hs.msg }), result);
      }
      // The answer comes after an await: a client that hangs up meanwhile must not crash the thread.
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      d.verify(hs.token).then(
        (outcome) => {
          if (aborted) return void gatewayMetrics.connectionsTotal.inc({ result: 'aborted' });
          if (!d.accepting()) return answer(null, 'not_accepting');
          if (outcome.ok) return answer(newState(d.newSession(outcome.user, outcome.device), null), 'opened');
          const r = d.refusalOf(outcome);
          answer(newState(null, { close: r.close, code: r.code, msg: r.msg }), r.result);
        },
        (err: unknown) => {
          d.log.error({ err }, 'token verification failed');
          if (aborted) return;
          gatewayMetrics.connectionsTotal.inc({ result: 'verify_error' });
          res.cork(() => res.writeStatus('503 Service Unavailable').end('token verification unavailable\n'));
        },
      );
    },

    open(ws) {
      const s = ws.getUserData();
      if (s.session === null) {
        const r = s.refusal!;
        return refuse(ws, r.close, r.code, r.msg);
      }
      const nowMs = d.now();
      s.limiter = new FrameRateLimiter(cfg.framesPerSecond, cfg.framesPerSecond * 2, nowMs);
      s.protocolErrors = new WindowCounter(PROTOCOL_ERROR_LIMIT, PROTOCOL_ERROR_WINDOW_S * 1000, nowMs);
      d.table.add(s.session.connId, ws);
      gatewayMetrics.connections.inc();
      sendFrame(ws, d.hello(s.session.user, s.session.device), cfg.maxBackpressureBytes);
      guard(ws, 'opened', () => d.handler().opened(s.session!));
    },

    message(ws, message, isBinary) {
      const s = ws.getUserData();
      if (s.ending || s.session === null) return;
      if (!isBinary) {
        rejected('text');
        return refuse(ws, CLOSE.protocolViolation, 'bad_frame', 'text frames are not supported; send binary msgpack frames');
      }
      if (message.byteLength > cfg.maxFrameBytes) {
        rejected('too_large');
        return refuse(ws, CLOSE.frameTooLarge, 'frame_too_large', `frame of ${message.byteLength} bytes exceeds ${cfg.maxFrameBytes}`);
      }
      const verdict = s.limiter!.take(d.now());
      // The codec copies what it keeps (bodies): uWS reuses `message` after this handler returns.
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
        if (decoded.code !== 'body_too_large' && s.protocolErrors!.hit(d.now())) {
          return refuse(ws, CLOSE.protocolViolation, decoded.code, `${decoded.msg} (over ${PROTOCOL_ERROR_LIMIT} protocol errors)`, decoded.id);
        }
        return sendError(ws, decoded.code, decoded.msg, decoded.id, decoded.field);
      }
      gatewayMetrics.framesIn.inc({ type: decoded.frame.t });
      const frame = decoded.frame;
      guard(ws, 'frame', () => d.handler().frame(s.session!, frame));
    },

    drain(ws) {
      gatewayMetrics.backpressureBytes.observe(ws.getBufferedAmount());
    },

    close(ws, code) {
      const s = ws.getUserData();
      s.ending = true;
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

  function rejected(reason: 'text' | 'too_large' | 'rate_limited'): void {
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
