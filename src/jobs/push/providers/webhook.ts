import { createHmac } from 'node:crypto';
import type { Agent } from 'node:https';
import { isTransientStatus, type PushNotification, type PushSender, type SendResult } from '../provider.js';
import { netReason, sendHttp } from './http.js';

export interface WebhookOptions {
  url: string;
  /** HMAC-SHA256 key; at least 32 characters. */
  secret: string;
  timeoutMs: number;
  /** Test hook: an agent that trusts a local CA. */
  agent?: Agent;
  now?: () => number;
}

export const WEBHOOK_SIGNATURE_HEADER = 'x-ticks-signature';
export const WEBHOOK_TIMESTAMP_HEADER = 'x-ticks-timestamp';

/**
 * `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: the receiver recomputes it over the raw body
 * and the timestamp header, compares in constant time, and rejects old timestamps (replays).
 */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return 'v1=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/**
 * Posts each notification as JSON to an operator's endpoint, which delivers it its own way (a push
 * gateway, an SMS bridge). Body: `{type: "ticks.push", user, device, token, badge, collapseId, ts}`.
 * 2xx is sent; 404 and 410 say the token is gone; 408, 429, 5xx and network errors are retried.
 */
export class WebhookPushSender implements PushSender {
  readonly provider = 'webhook';
  private readonly now: () => number;

  constructor(private readonly opts: WebhookOptions) {
    this.now = opts.now ?? Date.now;
  }

  async send(n: PushNotification): Promise<SendResult> {
    const ts = String(this.now());
    const body = JSON.stringify({ type: 'ticks.push', user: n.user, device: n.device, token: n.token, badge: n.badge, collapseId: n.collapseId, ts: Number(ts) });
    try {
      const res = await sendHttp(this.opts.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [WEBHOOK_TIMESTAMP_HEADER]: ts,
          [WEBHOOK_SIGNATURE_HEADER]: webhookSignature(this.opts.secret, ts, body),
        },
        body,
        timeoutMs: this.opts.timeoutMs,
        ...(this.opts.agent ? { agent: this.opts.agent } : {}),
      });
      if (res.status >= 200 && res.status < 300) return { outcome: 'sent' };
      if (res.status === 404 || res.status === 410) return { outcome: 'unregistered', reason: String(res.status) };
      if (isTransientStatus(res.status)) return { outcome: 'retry', reason: String(res.status) };
      return { outcome: 'error', reason: String(res.status) };
    } catch (err) {
      return { outcome: 'retry', reason: netReason(err) };
    }
  }

  /** Nothing to release: requests use the caller's agent or Node's global one. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
