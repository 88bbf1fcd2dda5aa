/**
 * Push notifications for users with no online device.
 *
 * `PushScheduler.notify(user, conv, seq)` is called by the user actor when a committed message has
 * nobody of that user online to deliver to. It never rejects and never blocks delivery: the enqueue
 * runs in the background and its failures are counted (a missed push delays nothing; the device syncs
 * when it next connects).
 *
 * Collapse: time is cut into windows of `collapseWindowMs`. The first notify of a user in window w
 * adds the job `push|<user>|<w>` to run at once; any further notify in the same window adds (once)
 * the trailing job `push-t|<user>|<w>` that runs at the window's end, so a burst of messages costs at
 * most two pushes per window and the last one carries the final badge. Job ids make this hold across
 * every node, and make retried notifies harmless.
 *
 * The job reads the user's devices with a push token and the unread badge (badge.ts) when it runs,
 * skips when nothing is unread, and sends to each device through its provider. A dead token is removed
 * from the device (only if it is still the same token); devices with a transient failure are kept in
 * the job's data and retried with backoff, the others are not sent to again.
 */
import type { ActorLog } from '../../actors/log.js';
import type { Store } from '../../store/store.js';
import type { Device, PushProvider } from '../../store/types.js';
import type { JobContext, JobQueue, JobRunner } from '../runner.js';
import { unreadCount } from './badge.js';
import { pushMetrics } from './metrics.js';
import type { PushSender, SendResult } from './provider.js';

export interface PushJobData {
  user: string;
  /** Set on retries: the devices still to send to. */
  devices?: string[];
}

export interface PushScheduler {
  /** Fire and forget; resolves to what happened, never rejects. */
  notify(userId: string, conversationId: string, seq: number): Promise<'enqueued' | 'collapsed' | 'error'>;
}

export interface PushServiceOptions {
  runner: JobRunner;
  store: Store;
  log: ActorLog;
  senders: Partial<Record<PushProvider, PushSender>>;
  collapseWindowMs: number;
  concurrency: number;
  attempts: number;
  backoffMs: number;
  /** Whether to run the push worker in this thread (every thread may enqueue). */
  work: boolean;
  /** Optional: skip the push when the user came online before the job ran. */
  isOnline?: (userId: string) => Promise<boolean>;
  now?: () => number;
}

export const PUSH_QUEUE = 'push';
const RECENT_CAP = 10_000;
/**
 * Providers collapse per device, so one constant id is enough for "the newest replaces the older";
 * it also keeps user ids out of what Apple and Google see.
 */
export const COLLAPSE_ID = 'ticks-unread';

export class PushService implements PushScheduler {
  /** The push queue on this runner (tests wait on its jobs). */
  readonly queue: JobQueue<PushJobData>;
  private readonly now: () => number;
  private readonly recent = new Map<string, { window: number; stage: 'lead' | 'trailing' }>();

  constructor(private readonly opts: PushServiceOptions) {
    this.now = opts.now ?? Date.now;
    this.queue = opts.runner.queue<PushJobData>({
      name: PUSH_QUEUE,
      concurrency: opts.concurrency,
      attempts: opts.attempts,
      backoffMs: opts.backoffMs,
      // Ids must stay taken for the whole window plus the trailing job's run.
      keepFinishedMs: Math.max(1000, opts.collapseWindowMs * 2),
    });
    if (opts.work) this.queue.process((job) => this.run(job));
  }

  async notify(userId: string, _conversationId: string, _seq: number): Promise<'enqueued' | 'collapsed' | 'error'> {
    const now = this.now();
    const w = Math.floor(now / this.opts.collapseWindowMs);
    const seen = this.recent.get(userId);
    const stage = seen?.window === w ? seen.stage : 'none';
    try {
      if (stage === 'none') {
        const lead = await this.queue.add({ user: userId }, { id: `push|${userId}|${w}` });
        this.remember(userId, w, 'lead');
        if (lead.added) {
          pushMetrics.notify.inc({ result: 'enqueued' });
          return 'enqueued';
        }
      }
      if (stage !== 'trailing') {
        const windowEnd = (w + 1) * this.opts.collapseWindowMs;
        await this.queue.add({ user: userId }, { id: `push-t|${userId}|${w}`, delayMs: Math.max(0, windowEnd - now) });
        this.remember(userId, w, 'trailing');
      }
      pushMetrics.notify.inc({ result: 'collapsed' });
      return 'collapsed';
    } catch (err) {
      pushMetrics.notify.inc({ result: 'error' });
      this.opts.log.warn({ err }, 'push enqueue failed');
      return 'error';
    }
  }

  /**
   * What this thread already enqueued for a user in the current window, so a burst of messages to an
   * offline user costs Redis two adds per window, not two per message. Only a shortcut: the job ids
   * keep the collapse right across threads and nodes. Bounded: cleared when it grows past the cap.
   */
  private remember(userId: string, window: number, stage: 'lead' | 'trailing'): void {
    if (this.recent.size >= RECENT_CAP && !this.recent.has(userId)) this.recent.clear();
    this.recent.set(userId, { window, stage });
  }

  /** One attempt of a push job (exported through the queue; also called directly by tests). */
  async run(job: JobContext<PushJobData>): Promise<void> {
    const { store } = this.opts;
    const { user } = job.data;
    if (this.opts.isOnline !== undefined && (await this.opts.isOnline(user))) {
      pushMetrics.jobs.inc({ result: 'online' });
      return;
    }
    let devices = (await store.listDevices(user)).filter((d) => d.pushProvider !== null && d.pushToken !== null);
    if (job.data.devices !== undefined) {
      const only = new Set(job.data.devices);
      devices = devices.filter((d) => only.has(d.deviceId));
    }
    if (devices.length === 0) {
      pushMetrics.jobs.inc({ result: 'no_devices' });
      return;
    }
    const badge = await unreadCount(store, user);
    if (badge === 0) {
      pushMetrics.jobs.inc({ result: 'nothing_unread' });
      return;
    }
    const results = await Promise.all(devices.map((d) => this.sendOne(d, badge)));
    const again = devices.filter((_, i) => results[i]!.outcome === 'retry').map((d) => d.deviceId);
    if (again.length > 0) {
      pushMetrics.jobs.inc({ result: 'retry' });
      await job.updateData({ user, devices: again });
      throw new Error(`push to ${again.length} of ${devices.length} devices failed transiently`);
    }
    pushMetrics.jobs.inc({ result: results.some((r) => r.outcome === 'sent') ? 'sent' : 'error' });
  }

  private async sendOne(d: Device, badge: number): Promise<SendResult> {
    const provider = d.pushProvider!;
    const sender = this.opts.senders[provider];
    if (sender === undefined) {
      pushMetrics.sent.inc({ provider, result: 'unconfigured' });
      return { outcome: 'error', reason: 'unconfigured' };
    }
    const end = pushMetrics.sendDuration.startTimer({ provider });
    const r = await sender.send({ user: d.userId, device: d.deviceId, token: d.pushToken!, badge, collapseId: COLLAPSE_ID });
    end();
    pushMetrics.sent.inc({ provider, result: r.outcome });
    if (r.outcome === 'unregistered') await this.removeToken(d, r.reason);
    else if (r.outcome === 'error') this.opts.log.warn({ provider, reason: r.reason }, 'push rejected');
    return r;
  }

  /** Clears the token only if the device still has it: a token set meanwhile is not touched. */
  private async removeToken(d: Device, reason: string | undefined): Promise<void> {
    const now = (await this.opts.store.listDevices(d.userId)).find((x) => x.deviceId === d.deviceId);
    if (now === undefined || now.pushToken !== d.pushToken) return;
    await this.opts.store.setPushToken(d.userId, d.deviceId, null, null);
    pushMetrics.tokensRemoved.inc({ provider: d.pushProvider! });
    this.opts.log.info({ provider: d.pushProvider, reason }, 'removed a dead push token');
  }
}
