import type { PushProvider } from '../../store/types.js';

/**
 * One push provider (APNs, FCM, Web Push, webhook, log). `send` never rejects: every outcome is data,
 * so the push job decides per device what happens next (Signal's push sender habit):
 * - `sent`: the provider accepted the notification;
 * - `unregistered`: the token is dead for good (uninstalled app, expired subscription, malformed
 *   token); the caller removes it from the device;
 * - `retry`: a transient failure (network, timeout, 429, 5xx, an expired provider credential that was
 *   refreshed); the job retries this device with backoff;
 * - `error`: a failure retrying will not fix (a rejected payload, a misconfigured topic); counted and
 *   logged, the token is kept.
 *
 * Notifications are content-free: a wake-up signal with the unread badge, never a message body, a
 * sender or a conversation id.
 */
export interface PushNotification {
  user: string;
  device: string;
  token: string;
  /** Unread messages over all the user's conversations. */
  badge: number;
  /** The same for every push of one user, so a newer notification replaces an older one. */
  collapseId: string;
}

export type SendOutcome = 'sent' | 'unregistered' | 'retry' | 'error';
export const SEND_OUTCOMES: readonly SendOutcome[] = ['sent', 'unregistered', 'retry', 'error'];

export interface SendResult {
  outcome: SendOutcome;
  /** Short machine-readable reason for logs (the provider's reason, an HTTP status, a network code). */
  reason?: string;
}

export interface PushSender {
  readonly provider: PushProvider;
  send(n: PushNotification): Promise<SendResult>;
  close(): Promise<void>;
}

/** HTTP statuses that say "try again later" for every HTTP provider. */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
