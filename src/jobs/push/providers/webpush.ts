import type { Agent } from 'node:https';
import webpush from 'web-push';
import { isTransientStatus, type PushNotification, type PushSender, type SendResult } from '../provider.js';
import { netReason } from './http.js';

export interface WebPushOptions {
  /** VAPID keys (URL-safe base64, from `web-push generate-vapid-keys`). */
  vapidPublicKey: string;
  vapidPrivateKey: string;
  /** mailto: or https: contact the push service can reach the operator by. */
  subject: string;
  /** How long the push service keeps the message for an offline browser. */
  ttlS: number;
  timeoutMs: number;
  /** Test hook: an agent that trusts a local CA. */
  agent?: Agent;
}

interface Subscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** The device's push token for Web Push is the browser's PushSubscription as JSON. */
export function parseSubscription(token: string): Subscription | null {
  try {
    const v = JSON.parse(token) as { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown } };
    if (typeof v.endpoint !== 'string' || !v.endpoint.startsWith('https://')) return null;
    if (typeof v.keys?.p256dh !== 'string' || typeof v.keys.auth !== 'string') return null;
    return { endpoint: v.endpoint, keys: { p256dh: v.keys.p256dh, auth: v.keys.auth } };
  } catch {
    return null;
  }
}

/**
 * Web Push through the `web-push` package: VAPID (RFC 8292) authentication and an aes128gcm
 * (RFC 8291) encrypted payload `{type: "wake", badge}`, collapsed per user with the Topic header.
 * 404 and 410 mean the subscription is gone; 429 and 5xx retry.
 */
export class WebPushSender implements PushSender {
  readonly provider = 'webpush';

  /** Checks the VAPID keys and subject now, so a bad configuration fails at start, not per push. */
  constructor(private readonly opts: WebPushOptions) {
    webpush.getVapidHeaders('https://push.example', opts.subject, opts.vapidPublicKey, opts.vapidPrivateKey, 'aes128gcm');
  }

  async send(n: PushNotification): Promise<SendResult> {
    const sub = parseSubscription(n.token);
    if (sub === null) return { outcome: 'unregistered', reason: 'malformed_subscription' };
    try {
      await webpush.sendNotification(sub, JSON.stringify({ type: 'wake', badge: n.badge }), {
        vapidDetails: { subject: this.opts.subject, publicKey: this.opts.vapidPublicKey, privateKey: this.opts.vapidPrivateKey },
        TTL: this.opts.ttlS,
        urgency: 'high',
        topic: topicOf(n.collapseId),
        contentEncoding: 'aes128gcm',
        timeout: this.opts.timeoutMs,
        ...(this.opts.agent ? { agent: this.opts.agent } : {}),
      });
      return { outcome: 'sent' };
    } catch (err) {
      if (err instanceof webpush.WebPushError) {
        const status = err.statusCode;
        if (status === 404 || status === 410) return { outcome: 'unregistered', reason: String(status) };
        if (isTransientStatus(status)) return { outcome: 'retry', reason: String(status) };
        return { outcome: 'error', reason: String(status) };
      }
      // With the configuration checked at start, what is left is the network (refused, reset, the
      // 'Socket timeout' web-push raises without a code).
      return { outcome: 'retry', reason: netReason(err) };
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The Topic header allows at most 32 URL-safe base64 characters. */
function topicOf(collapseId: string): string {
  return Buffer.from(collapseId).toString('base64url').slice(0, 32);
}
