import { readFileSync } from 'node:fs';
import type { ActorLog } from '../actors/log.js';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { PushProvider } from '../store/types.js';
import { BullmqJobRunner } from './bullmq-runner.js';
import { OfflineFlush } from './flush.js';
import { MemoryJobRunner } from './memory-runner.js';
import type { PushSender } from './push/provider.js';
import { ApnsPushSender } from './push/providers/apns.js';
import { FcmPushSender, parseServiceAccount } from './push/providers/fcm.js';
import { LogPushSender } from './push/providers/log.js';
import { WebhookPushSender } from './push/providers/webhook.js';
import { WebPushSender } from './push/providers/webpush.js';
import { PushService, type PushScheduler } from './push/push-service.js';
import type { JobRunner } from './runner.js';

export interface Jobs {
  runner: JobRunner;
  /** Null when push is disabled. */
  push: PushScheduler | null;
  flush: OfflineFlush;
  close(): Promise<void>;
}

export interface CreateJobsOptions {
  config: Pick<Config, 'push' | 'jobs' | 'cluster'>;
  store: Store;
  log: ActorLog;
  /** Shard threads of this node: in embedded mode each has its own runner and a share of the flush rate. */
  shardCount: number;
  /** Connection names, e.g. `<node>-<shard>`. */
  name: string;
  isOnline?: (userId: string) => Promise<boolean>;
}

/**
 * Builds this thread's job runner, push service and offline-flush gate from the configuration:
 * BullMQ when `cluster.redisUrl` is set (queues under `<cluster.keyPrefix>jobs`), else the memory
 * runner. In embedded mode each shard thread has its own memory runner, so the node-wide flush rate is
 * split over the threads (rounded up). Throws at start, naming the key, when a provider's settings are
 * incomplete or unreadable.
 */
export function createJobs(o: CreateJobsOptions): Jobs {
  const { push, jobs, cluster } = o.config;
  const redisUrl = cluster.redisUrl;
  const runner: JobRunner =
    redisUrl !== undefined
      ? new BullmqJobRunner({ url: redisUrl, prefix: `${cluster.keyPrefix}jobs`.replace(/:+$/, ''), name: `jobs-${o.name}` })
      : new MemoryJobRunner();
  const senders = push.enabled ? createSenders(push, o.log) : {};
  const pushService = push.enabled
    ? new PushService({
        runner,
        store: o.store,
        log: o.log,
        senders,
        collapseWindowMs: push.collapseWindowMs,
        concurrency: push.concurrency,
        attempts: push.attempts,
        backoffMs: push.backoffMs,
        work: true,
        ...(o.isOnline ? { isOnline: o.isOnline } : {}),
      })
    : null;
  const flush = new OfflineFlush({
    runner,
    inlineMaxMessages: jobs.flushInlineMaxMessages,
    maxPerWindow: redisUrl !== undefined ? jobs.flushMaxPerWindow : Math.max(1, Math.ceil(jobs.flushMaxPerWindow / o.shardCount)),
    windowMs: jobs.flushWindowMs,
    maxWaitMs: jobs.flushMaxWaitMs,
    work: true,
  });
  return {
    runner,
    push: pushService,
    flush,
    async close() {
      // The runner drains active pushes first, then the senders' connections go.
      await runner.close();
      await Promise.all(Object.values(senders).map((s) => s.close()));
    },
  };
}

export function createSenders(push: Config['push'], log: ActorLog): Partial<Record<PushProvider, PushSender>> {
  const out: Partial<Record<PushProvider, PushSender>> = {};
  const timeoutMs = push.timeoutMs;
  if (push.log.enabled) out.log = new LogPushSender(log);
  const a = push.apns;
  if (a.keyFile !== undefined) {
    if (a.keyId === undefined || a.teamId === undefined || a.topic === undefined) {
      throw new Error('push.apns: keyId, teamId and topic are required when push.apns.keyFile is set');
    }
    out.apns = new ApnsPushSender({
      url: a.url,
      keyPem: readSecret('push.apns.keyFile', a.keyFile),
      keyId: a.keyId,
      teamId: a.teamId,
      topic: a.topic,
      pushType: a.pushType,
      alertLocKey: a.alertLocKey,
      ttlS: a.ttlS,
      timeoutMs,
      tokenRefreshMs: a.tokenRefreshMs,
    });
  }
  const f = push.fcm;
  if (f.serviceAccountFile !== undefined) {
    let serviceAccount;
    try {
      serviceAccount = parseServiceAccount(readSecret('push.fcm.serviceAccountFile', f.serviceAccountFile));
    } catch (err) {
      throw new Error(`push.fcm.serviceAccountFile (${f.serviceAccountFile}): ${(err as Error).message}`);
    }
    out.fcm = new FcmPushSender({ serviceAccount, baseUrl: f.baseUrl, ...(f.tokenUrl ? { tokenUrl: f.tokenUrl } : {}), timeoutMs });
  }
  const w = push.webpush;
  if ((w.vapidPublicKey === undefined) !== (w.vapidPrivateKey === undefined)) {
    throw new Error('push.webpush: set both vapidPublicKey and vapidPrivateKey, or neither');
  }
  if (w.vapidPublicKey !== undefined && w.vapidPrivateKey !== undefined) {
    try {
      out.webpush = new WebPushSender({ vapidPublicKey: w.vapidPublicKey, vapidPrivateKey: w.vapidPrivateKey, subject: w.subject, ttlS: w.ttlS, timeoutMs });
    } catch (err) {
      throw new Error(`push.webpush: ${(err as Error).message}`);
    }
  }
  const h = push.webhook;
  if (h.url !== undefined) {
    if (h.secret === undefined) throw new Error('push.webhook.secret is required when push.webhook.url is set');
    out.webhook = new WebhookPushSender({ url: h.url, secret: h.secret, timeoutMs });
  }
  return out;
}

function readSecret(key: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}
