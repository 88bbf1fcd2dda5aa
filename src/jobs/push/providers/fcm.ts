import type { Agent } from 'node:https';
import { importPKCS8, SignJWT, type CryptoKey } from 'jose';
import { isTransientStatus, type PushNotification, type PushSender, type SendResult } from '../provider.js';
import { netReason, sendHttp } from './http.js';

/** The fields of a Google service-account key file that FCM needs. */
export interface ServiceAccount {
  project_id: string;
  client_email: string;
  private_key: string;
  token_uri?: string;
}

export interface FcmOptions {
  serviceAccount: ServiceAccount;
  /** https://fcm.googleapis.com */
  baseUrl: string;
  /** OAuth2 token endpoint; the service account's token_uri when unset. */
  tokenUrl?: string;
  timeoutMs: number;
  /** Test hook: an agent that trusts a local CA. */
  agent?: Agent;
  now?: () => number;
}

export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const DEFAULT_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** An access token is renewed this long before it expires. */
const EXPIRY_MARGIN_MS = 60_000;
const ASSERTION_LIFETIME_S = 3600;

/** Parses and checks a service-account key (JSON text); names the missing field. */
export function parseServiceAccount(json: string): ServiceAccount {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new Error('the FCM service account is not valid JSON');
  }
  for (const k of ['project_id', 'client_email', 'private_key'] as const) {
    if (typeof v[k] !== 'string' || v[k] === '') throw new Error(`the FCM service account has no ${k}`);
  }
  return v as unknown as ServiceAccount;
}

/**
 * FCM HTTP v1. Auth is OAuth2 for a service account: an RS256 JWT assertion signed with the
 * account's key is exchanged at the token endpoint for an access token, cached until a minute before
 * it expires (one exchange at a time; a 401 from FCM drops it). The message is data-only and
 * content-free: `{type: "wake", badge}`, high priority, collapsed per user.
 * 404 NOT_FOUND and UNREGISTERED mean a dead token; 401, 429 and 5xx retry.
 */
export class FcmPushSender implements PushSender {
  readonly provider = 'fcm';
  private key: Promise<CryptoKey> | null = null;
  private access: { token: string; expiresAtMs: number } | null = null;
  private refreshing: Promise<string> | null = null;
  private readonly now: () => number;

  constructor(private readonly opts: FcmOptions) {
    this.now = opts.now ?? Date.now;
  }

  get tokenUrl(): string {
    return this.opts.tokenUrl ?? this.opts.serviceAccount.token_uri ?? DEFAULT_TOKEN_URL;
  }

  async send(n: PushNotification): Promise<SendResult> {
    let bearer: string;
    try {
      bearer = await this.accessToken();
    } catch (err) {
      return { outcome: 'retry', reason: `token_exchange_${(err as { reason?: string }).reason ?? netReason(err)}` };
    }
    const message = {
      message: {
        token: n.token,
        data: { type: 'wake', badge: String(n.badge) },
        android: { priority: 'HIGH', collapse_key: n.collapseId },
        apns: { headers: { 'apns-collapse-id': n.collapseId.slice(0, 64), 'apns-priority': '5' }, payload: { aps: { 'content-available': 1, badge: n.badge } } },
      },
    };
    const url = `${this.opts.baseUrl.replace(/\/$/, '')}/v1/projects/${encodeURIComponent(this.opts.serviceAccount.project_id)}/messages:send`;
    try {
      const res = await sendHttp(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body: JSON.stringify(message),
        timeoutMs: this.opts.timeoutMs,
        ...(this.opts.agent ? { agent: this.opts.agent } : {}),
      });
      if (res.status === 200) return { outcome: 'sent' };
      const { status, errorCode } = parseFcmError(res.body);
      const reason = errorCode ?? status ?? String(res.status);
      if (res.status === 404 || errorCode === 'UNREGISTERED' || status === 'NOT_FOUND') return { outcome: 'unregistered', reason };
      if (res.status === 401) {
        this.access = null;
        return { outcome: 'retry', reason };
      }
      if (isTransientStatus(res.status)) return { outcome: 'retry', reason };
      return { outcome: 'error', reason };
    } catch (err) {
      return { outcome: 'retry', reason: netReason(err) };
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private accessToken(): Promise<string> {
    if (this.access !== null && this.now() < this.access.expiresAtMs - EXPIRY_MARGIN_MS) return Promise.resolve(this.access.token);
    this.refreshing ??= this.exchange().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async exchange(): Promise<string> {
    const sa = this.opts.serviceAccount;
    this.key ??= importPKCS8(sa.private_key, 'RS256');
    const key = await this.key.catch((err: unknown) => {
      this.key = null;
      throw Object.assign(new Error('bad FCM service account key'), { reason: 'bad_key', cause: err });
    });
    const iat = Math.floor(this.now() / 1000);
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(sa.client_email)
      .setAudience(this.tokenUrl)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ASSERTION_LIFETIME_S)
      .sign(key);
    const res = await sendHttp(this.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
      timeoutMs: this.opts.timeoutMs,
      ...(this.opts.agent ? { agent: this.opts.agent } : {}),
    });
    if (res.status !== 200) throw Object.assign(new Error(`token endpoint answered ${res.status}`), { reason: String(res.status) });
    const v = JSON.parse(res.body) as { access_token?: unknown; expires_in?: unknown };
    if (typeof v.access_token !== 'string' || typeof v.expires_in !== 'number') {
      throw Object.assign(new Error('token endpoint answer has no access_token/expires_in'), { reason: 'bad_answer' });
    }
    this.access = { token: v.access_token, expiresAtMs: this.now() + v.expires_in * 1000 };
    return v.access_token;
  }
}

/** `{error: {status, details: [{errorCode}]}}` of an FCM v1 error answer. */
function parseFcmError(body: string): { status?: string; errorCode?: string } {
  try {
    const e = (JSON.parse(body) as { error?: { status?: unknown; details?: { errorCode?: unknown }[] } }).error;
    const status = typeof e?.status === 'string' ? e.status : undefined;
    const code = e?.details?.find((d) => typeof d.errorCode === 'string')?.errorCode;
    return { ...(status ? { status } : {}), ...(typeof code === 'string' ? { errorCode: code } : {}) };
  } catch {
    return {};
  }
}
