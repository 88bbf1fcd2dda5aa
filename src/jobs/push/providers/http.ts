import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type Agent } from 'node:https';

/**
 * A small HTTP/1.1 client for the providers that speak plain HTTPS (FCM, webhook): one request, the
 * whole answer as text, a hard timeout. Node's fetch cannot take a custom CA without undici, which
 * tests need to reach their self-signed local endpoints; `agent` carries it.
 */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  agent?: Agent;
  timeoutMs: number;
}

/** Answers are read up to this size; providers answer a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

export function sendHttp(url: string, req: HttpRequest): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    const r = make(
      u,
      {
        method: req.method,
        headers: { ...req.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        ...(u.protocol === 'https:' && req.agent ? { agent: req.agent } : {}),
        timeout: req.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(Object.assign(new Error(`no answer from ${u.host} within ${req.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    r.on('error', reject);
    r.end(body);
  });
}

/** A network error's code (ECONNREFUSED, ETIMEDOUT, ...) for logs and metrics reasons. */
export function netReason(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  // An HTTP/2 stream of a failed session is "cancelled"; its cause says why (refused, reset).
  if (e?.code === 'ERR_HTTP2_STREAM_CANCEL' && typeof e.cause?.code === 'string') return e.cause.code;
  return typeof e?.code === 'string' ? e.code : 'network';
}
