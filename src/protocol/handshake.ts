import { CLOSE, type CloseCode, type ErrorCode } from './codes.js';
import { PROTOCOL_VERSION, SUPPORTED_VERSIONS } from './client-frames.js';

/**
 * The connect request: `GET /ws?v=1` with the JWT in `Authorization: Bearer <jwt>` or, for browsers
 * (which cannot set headers on a WebSocket), in the `token` query parameter. This module only reads
 * the request; verifying the token (signature, algorithm allow-list, claims) is the gateway's job.
 */

export const CONNECT_PATH = '/ws';
/** A compact JWS is three base64url parts; 8 KiB bounds what the verifier is asked to look at. */
const MAX_TOKEN_LENGTH = 8192;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

export type HandshakeResult =
  | { ok: true; version: number; token: string }
  /** Refused: the gateway sends `errorFrame(code, msg)` and closes with `close`. */
  | { ok: false; close: CloseCode; code: ErrorCode; msg: string };

/**
 * Reads version and token from the upgrade request. `query` is the raw query string, with or without
 * its leading `?`; `authorization` is the header value when present. The header wins when both carry
 * a token. Never log the query string: it may hold a token.
 */
export function parseHandshake(query: string, authorization?: string): HandshakeResult {
  const params = new URLSearchParams(query);
  const v = params.get('v');
  const version = v !== null && /^[0-9]{1,4}$/.test(v) ? Number(v) : NaN;
  if (!SUPPORTED_VERSIONS.includes(version)) {
    const msg = v === null ? 'missing protocol version (v)' : `unsupported protocol version; supported: ${SUPPORTED_VERSIONS.join(', ')}`;
    return { ok: false, close: CLOSE.unsupportedVersion, code: 'unsupported_version', msg };
  }
  let token: string | null;
  if (authorization !== undefined && authorization !== '') {
    const match = BEARER.exec(authorization);
    if (match === null) return { ok: false, close: CLOSE.badToken, code: 'unauthorized', msg: 'Authorization is not a Bearer token' };
    token = match[1]!;
  } else {
    token = params.get('token');
  }
  if (token === null || token === '') return { ok: false, close: CLOSE.missingToken, code: 'unauthorized', msg: 'missing token' };
  if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) {
    return { ok: false, close: CLOSE.badToken, code: 'unauthorized', msg: 'token is not a compact JWT' };
  }
  return { ok: true, version, token };
}

/**
 * The URL a client connects to (SDK side): `base` is the server's ws:// or wss:// origin (a path
 * prefix is kept). Pass `token` only where headers cannot be set (browsers).
 */
export function connectUrl(base: string, token?: string): string {
  const url = new URL(base);
  url.pathname = url.pathname.replace(/\/+$/, '') + CONNECT_PATH;
  url.search = '';
  url.searchParams.set('v', String(PROTOCOL_VERSION));
  if (token !== undefined) url.searchParams.set('token', token);
  return url.toString();
}
