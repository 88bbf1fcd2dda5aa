import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { importPKCS8, SignJWT, type CryptoKey } from 'jose';
import { isTransientStatus, type PushNotification, type PushSender, type SendResult } from '../provider.js';
import { netReason } from './http.js';

export interface ApnsOptions {
  /** https://api.push.apple.com (production) or https://api.sandbox.push.apple.com. */
  url: string;
  /** The .p8 signing key (PKCS#8 PEM, P-256). */
  keyPem: string;
  keyId: string;
  teamId: string;
  /** apns-topic: the app's bundle id. */
  topic: string;
  /** alert: a visible, content-free notification; background: a silent wake-up (content-available). */
  pushType: 'alert' | 'background';
  /** Localization key of the alert text the app shows (content-free: the server sends no text). */
  alertLocKey: string;
  /** How long APNs keeps trying an offline device (apns-expiration). */
  ttlS: number;
  timeoutMs: number;
  /** Provider tokens are re-signed after this long; Apple accepts 20 to 60 minutes. */
  tokenRefreshMs: number;
  /** Test hook: PEM CA that signed the local endpoint's certificate. */
  ca?: string;
  now?: () => number;
}

/** A device token is hex; anything else is a dead token, and must never reach the request path. */
const DEVICE_TOKEN = /^[0-9a-fA-F]{32,200}$/;
/** 400 reasons that mean this token will never work again. */
const DEAD_TOKEN_REASONS = new Set(['BadDeviceToken', 'Unregistered', 'ExpiredToken']);
const PROVIDER_TOKEN_REASONS = new Set(['ExpiredProviderToken', 'InvalidProviderToken']);

/**
 * APNs over HTTP/2 with token authentication: one long-lived HTTP/2 session (reopened after GOAWAY or
 * an error), `authorization: bearer <ES256 provider JWT>` re-signed every `tokenRefreshMs` (and at
 * once when APNs says it expired), `apns-collapse-id` so a newer push replaces the older one.
 * 410, and 400 BadDeviceToken, mean a dead token; 403 Expired/InvalidProviderToken re-signs and
 * retries; 429 and 5xx retry.
 */
export class ApnsPushSender implements PushSender {
  readonly provider = 'apns';
  private key: Promise<CryptoKey> | null = null;
  private jwt: { token: string; issuedAtMs: number } | null = null;
  private session: ClientHttp2Session | null = null;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: ApnsOptions) {
    this.now = opts.now ?? Date.now;
  }

  async send(n: PushNotification): Promise<SendResult> {
    if (!DEVICE_TOKEN.test(n.token)) return { outcome: 'unregistered', reason: 'malformed_token' };
    if (this.closed) return { outcome: 'retry', reason: 'closed' };
    let bearer: string;
    try {
      bearer = await this.providerToken();
    } catch {
      return { outcome: 'error', reason: 'bad_signing_key' };
    }
    const aps =
      this.opts.pushType === 'alert'
        ? { alert: { 'loc-key': this.opts.alertLocKey }, badge: n.badge, sound: 'default' }
        : { 'content-available': 1, badge: n.badge };
    const headers = {
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: `/3/device/${n.token}`,
      authorization: `bearer ${bearer}`,
      'apns-topic': this.opts.topic,
      'apns-push-type': this.opts.pushType,
      'apns-priority': this.opts.pushType === 'alert' ? '10' : '5',
      'apns-collapse-id': n.collapseId.slice(0, 64),
      'apns-expiration': String(Math.floor(this.now() / 1000) + this.opts.ttlS),
      'content-type': 'application/json',
    };
    let status: number;
    let body: string;
    try {
      ({ status, body } = await this.request(headers, JSON.stringify({ aps })));
    } catch (err) {
      return { outcome: 'retry', reason: netReason(err) };
    }
    if (status === 200) return { outcome: 'sent' };
    const reason = parseReason(body) ?? String(status);
    if (status === 410 || (status === 400 && DEAD_TOKEN_REASONS.has(reason))) return { outcome: 'unregistered', reason };
    if (status === 403 && PROVIDER_TOKEN_REASONS.has(reason)) {
      this.jwt = null;
      return { outcome: 'retry', reason };
    }
    if (isTransientStatus(status)) return { outcome: 'retry', reason };
    return { outcome: 'error', reason };
  }

  async close(): Promise<void> {
    this.closed = true;
    const s = this.session;
    this.session = null;
    if (s !== null && !s.closed) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The cached provider JWT, re-signed when older than tokenRefreshMs. */
  private async providerToken(): Promise<string> {
    const now = this.now();
    if (this.jwt !== null && now - this.jwt.issuedAtMs < this.opts.tokenRefreshMs) return this.jwt.token;
    this.key ??= importPKCS8(this.opts.keyPem, 'ES256');
    const key = await this.key.catch((err: unknown) => {
      this.key = null;
      throw err;
    });
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.opts.keyId })
      .setIssuer(this.opts.teamId)
      .setIssuedAt(Math.floor(now / 1000))
      .sign(key);
    this.jwt = { token, issuedAtMs: now };
    return token;
  }

  private connection(): ClientHttp2Session {
    const s = this.session;
    if (s !== null && !s.closed && !s.destroyed) return s;
    const session = connect(this.opts.url, this.opts.ca ? { ca: this.opts.ca } : {});
    // A failed or drained session is replaced on the next request; its in-flight streams fail with
    // their own errors and are retried by the job.
    const forget = (): void => {
      if (this.session === session) this.session = null;
    };
    session.on('error', forget);
    session.on('goaway', forget);
    session.on('close', forget);
    session.unref();
    this.session = session;
    return session;
  }

  private request(headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
      };
      const fail = (err: Error): void => settle(() => reject(err));
      const stream = this.connection().request(headers);
      stream.setTimeout(this.opts.timeoutMs, () => {
        fail(Object.assign(new Error(`APNs did not answer within ${this.opts.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
        stream.close(constants.NGHTTP2_CANCEL);
      });
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (h) => (status = Number(h[constants.HTTP2_HEADER_STATUS])));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (status === 0) fail(Object.assign(new Error('APNs stream ended without a response'), { code: 'ECONNRESET' }));
        else settle(() => resolve({ status, body: Buffer.concat(chunks).toString('utf8') }));
      });
      stream.on('error', fail);
      stream.on('close', () => fail(Object.assign(new Error('APNs stream closed without a response'), { code: 'ECONNRESET' })));
      stream.end(body);
    });
  }
}

function parseReason(body: string): string | null {
  try {
    const r = (JSON.parse(body) as { reason?: unknown }).reason;
    return typeof r === 'string' ? r : null;
  } catch {
    return null;
  }
}
