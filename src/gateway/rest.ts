import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { LIFETIME_MESSAGE } from '../auth/verify.js';

/**
 * Small helpers for the JSON/HTTP endpoints beside the WebSocket (media in src/media/http.ts, prekeys
 * in src/keys/http.ts), on uWS's raw request/response.
 *
 * uWS rules these follow: a request's headers and URL can only be read synchronously inside the
 * route handler; a response answered later must register `onAborted` first (or a client that hangs
 * up crashes the thread) and must write inside `cork`; after `onAborted` fired the response must not
 * be touched again. `Exchange` keeps that state.
 *
 * Errors are `{ "error": "<stable code>", "message": "<text>" }` with the HTTP status.
 */
export type { HttpRequest, HttpResponse };

const STATUS: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  409: '409 Conflict',
  411: '411 Length Required',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

export function statusLine(status: number): string {
  return STATUS[status] ?? `${status} Status`;
}

/** An expected HTTP failure: answered with `status` and a JSON error body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export class Exchange {
  aborted = false;
  done = false;
  private readonly abortHooks: (() => void)[] = [];

  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
      for (const h of this.abortHooks) h();
    });
  }

  onAbort(fn: () => void): void {
    this.abortHooks.push(fn);
  }

  get open(): boolean {
    return !this.aborted && !this.done;
  }

  /**
   * Answers with a JSON body. `close` also closes the connection (used when the request body is
   * still arriving, for example an upload refused as too large: reading the rest would waste it).
   */
  json(status: number, body: unknown, headers: Record<string, string> = {}, close = false): void {
    if (!this.open) return;
    this.done = true;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status)).writeHeader('Content-Type', 'application/json');
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(JSON.stringify(body), close);
    });
  }

  error(err: HttpError, close = false): void {
    this.json(err.status, { error: err.code, message: err.message }, err.headers, close);
  }
}

/** The token of `Authorization: Bearer <token>`; read synchronously in the handler. */
export function bearerToken(req: HttpRequest): string | undefined {
  const h = req.getHeader('authorization');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** The verified (user, device) of a token, or an HttpError 401 that says why. */
export async function authenticate(verify: TokenVerifier, token: string | undefined): Promise<{ user: string; device: string }> {
  const outcome = await verify(token);
  if (outcome.ok) return { user: outcome.user, device: outcome.device };
  const why =
    outcome.reason === 'missing'
      ? 'missing bearer token (Authorization: Bearer <jwt>)'
      : outcome.reason === 'removed'
        ? 'device removed; a token issued after the removal registers it again'
        : outcome.reason === 'lifetime'
          ? LIFETIME_MESSAGE
          : `${outcome.reason} token`;
  throw new HttpError(401, `auth.${outcome.reason}`, why, { 'WWW-Authenticate': 'Bearer' });
}

/**
 * Reads a whole (small) request body, refusing more than `maxBytes` as soon as it is exceeded (413,
 * connection closed) instead of buffering it. Must be called synchronously in the handler.
 */
export function readBody(ex: Exchange, maxBytes: number): Promise<Buffer> {
  const body = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    ex.onAbort(() => reject(new HttpError(400, 'http.aborted', 'client went away')));
    ex.res.onData((chunk, isLast) => {
      if (size < 0) return;
      size += chunk.byteLength;
      if (size > maxBytes) {
        size = -1;
        reject(new HttpError(413, 'http.body_too_large', `request body over ${maxBytes} bytes`));
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0))); // the chunk is only valid during this callback
      if (isLast) resolve(Buffer.concat(chunks));
    });
  });
  // Marked handled: a caller that fails first (bad token) never awaits it, and an unhandled
  // rejection would take the shard down.
  body.catch(() => undefined);
  return body;
}

/** Parses a JSON body; a syntax error is 400. */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'http.bad_json', 'request body is not valid JSON');
  }
}

/** Query parameters of a request (read synchronously in the handler). */
export function queryParams(req: HttpRequest): URLSearchParams {
  return new URLSearchParams(req.getQuery() ?? '');
}

/** A route parameter, percent-decoded; malformed escapes give '' (then the id check refuses it). */
export function param(req: HttpRequest, index: number): string {
  try {
    return decodeURIComponent(req.getParameter(index) ?? '');
  } catch {
    return '';
  }
}
