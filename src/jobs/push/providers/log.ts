import type { ActorLog } from '../../../actors/log.js';
import type { PushNotification, PushSender, SendResult } from '../provider.js';

/** Writes each notification to the log instead of sending it: development and tests. */
export class LogPushSender implements PushSender {
  readonly provider = 'log';

  constructor(private readonly log: ActorLog) {}

  send(n: PushNotification): Promise<SendResult> {
    this.log.info({ user: n.user, device: n.device, badge: n.badge, collapseId: n.collapseId }, 'push (log provider)');
    return Promise.resolve({ outcome: 'sent' });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
