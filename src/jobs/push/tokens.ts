import { PUSH_PROVIDERS, type PushProvider } from '../../store/types.js';
import { parseSubscription } from './providers/webpush.js';

/** Longest push token accepted (a Web Push subscription is the longest, a few hundred bytes). */
export const MAX_PUSH_TOKEN_BYTES = 4096;

const APNS_TOKEN = /^[0-9a-fA-F]{32,200}$/;
const FCM_TOKEN = /^[A-Za-z0-9_:.-]{16,4096}$/;
const PRINTABLE = /^[\x21-\x7e]{1,1024}$/;

/**
 * Checks a token a client registers for a device, before it is stored: null when acceptable, else
 * the reason (for an error frame or a 400). The providers treat a token that still fails later as
 * dead and remove it, so this is the first line, not the only one.
 */
export function checkPushToken(provider: unknown, token: unknown): string | null {
  if (typeof provider !== 'string' || !(PUSH_PROVIDERS as readonly string[]).includes(provider)) {
    return `push provider must be one of ${PUSH_PROVIDERS.join(', ')}`;
  }
  if (typeof token !== 'string' || token === '' || Buffer.byteLength(token) > MAX_PUSH_TOKEN_BYTES) {
    return `push token must be a non-empty string of at most ${MAX_PUSH_TOKEN_BYTES} bytes`;
  }
  switch (provider as PushProvider) {
    case 'apns':
      return APNS_TOKEN.test(token) ? null : 'an APNs device token is 32 to 200 hex digits';
    case 'fcm':
      return FCM_TOKEN.test(token) ? null : 'an FCM registration token is letters, digits and _ : . -';
    case 'webpush':
      return parseSubscription(token) !== null ? null : 'a Web Push token is the PushSubscription JSON with an https endpoint and keys p256dh and auth';
    case 'webhook':
    case 'log':
      return PRINTABLE.test(token) ? null : 'a webhook or log token is 1 to 1024 printable ASCII characters';
  }
}
