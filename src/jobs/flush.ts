/**
 * Offline flush: the catch-up of a reconnecting device, paced cluster-wide.
 *
 * After a node crash, every device it held reconnects at once and each asks for its backlog. Sync
 * rounds run on the shard that owns the socket (src/actors/sync.ts), so what needs a cluster-wide
 * bound is when they start. `OfflineFlush.schedule` is that gate:
 * - a backlog of at most `inlineMaxMessages` runs inline: `schedule` resolves at once;
 * - a larger one becomes a job `flush|<user>|<device>|<session>` in the `flush` queue, whose limiter
 *   (BullMQ's, shared by every node through Redis; the memory runner's in embedded mode) lets at most
 *   `maxPerWindow` start per `windowMs`. The job itself is the permit: it completes at once, and
 *   `schedule` resolves when it has, so the caller then runs the sync.
 * The job id makes a repeated request of the same session share one permit.
 *
 * `schedule` rejects with a JobError when the queue cannot be reached or the permit does not come
 * within `maxWaitMs` (`jobs.unavailable`, `jobs.timeout`, both retryable): the caller answers the sync
 * with a retryable error and the client retries with backoff, which is itself the back-pressure.
 */
import { joinFloor, type CursorEntry, type UserConversation } from '../store/types.js';
import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { JobError } from './errors.js';
import type { JobQueue, JobRunner } from './runner.js';

export interface FlushRequest {
  user: string;
  device: string;
  /** Distinguishes connections of the device (e.g. `<node>.<shard>.<connId>`), `[A-Za-z0-9_.@-]`. */
  session: string;
  /** Messages the device is missing (see backlogOf). */
  backlog: number;
}

export interface FlushPermit {
  mode: 'inline' | 'queued';
  waitedMs: number;
}

export interface OfflineFlushOptions {
  runner: JobRunner;
  inlineMaxMessages: number;
  maxPerWindow: number;
  windowMs: number;
  maxWaitMs: number;
  /** Whether this thread grants permits (runs the flush worker). */
  work: boolean;
  /** Called in the granting thread with the time the runner granted a permit (tests count with it). */
  onGrant?: (grantedAtMs: number) => void;
}

export const FLUSH_QUEUE = 'flush';

const metrics = {
  requests: new Counter({
    name: 'ticks_jobs_flush_requests_total',
    help: 'Offline flush requests by mode (inline: small backlog, queued: paced by the flush rate limit) and result (ok, timeout, unavailable, error).',
    labelNames: ['mode', 'result'] as const,
    registers: [registry],
  }),
  granted: new Counter({
    name: 'ticks_jobs_flush_granted_total',
    help: 'Offline flush permits granted by this thread\'s flush worker (for any node\'s request).',
    registers: [registry],
  }),
  wait: new Histogram({
    name: 'ticks_jobs_flush_wait_seconds',
    help: 'Time a queued offline flush waited for its permit.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  }),
};

/**
 * Messages a device is missing: per conversation, head minus where its sync starts (never negative).
 * Sync starts after the device's cursor, or at the member's join floor when the cursor is below it
 * (src/actors/sync.ts): the seqs below a group member's floor are never sent to it, so they are not
 * counted either (a member added to a group with a long history has no backlog from before it).
 */
export function backlogOf(convs: readonly UserConversation[], cursors: ReadonlyMap<string, number> | readonly CursorEntry[]): number {
  const at = cursors instanceof Map ? cursors : new Map((cursors as readonly CursorEntry[]).map((c) => [c.conversationId, c.seq]));
  let n = 0;
  for (const c of convs) {
    const after = Math.max(at.get(c.conversationId) ?? 0, joinFloor(c.kind, c.fromSeq) - 1);
    n += Math.max(0, c.head - after);
  }
  return n;
}

export class OfflineFlush {
  private readonly queue: JobQueue<{ user: string; device: string }>;

  constructor(private readonly opts: OfflineFlushOptions) {
    this.queue = opts.runner.queue({
      name: FLUSH_QUEUE,
      // Permits complete at once; concurrency only bounds bookkeeping.
      concurrency: 64,
      attempts: 1,
      backoffMs: 0,
      limiter: { max: opts.maxPerWindow, durationMs: opts.windowMs },
      keepFinishedMs: Math.max(1000, opts.maxWaitMs),
    });
    if (opts.work) {
      this.queue.process(async (job) => {
        metrics.granted.inc();
        opts.onGrant?.(job.startedAtMs);
      });
    }
  }

  /** Resolves when the device's catch-up may run now. */
  async schedule(req: FlushRequest): Promise<FlushPermit> {
    if (req.backlog <= this.opts.inlineMaxMessages) {
      metrics.requests.inc({ mode: 'inline', result: 'ok' });
      return { mode: 'inline', waitedMs: 0 };
    }
    const start = Date.now();
    try {
      const { id } = await this.queue.add({ user: req.user, device: req.device }, { id: `flush|${req.user}|${req.device}|${req.session}` });
      await this.queue.waitFinished(id, this.opts.maxWaitMs);
    } catch (err) {
      const code = err instanceof JobError ? err.code : 'jobs.internal';
      metrics.requests.inc({ mode: 'queued', result: code === 'jobs.timeout' ? 'timeout' : code === 'jobs.unavailable' ? 'unavailable' : 'error' });
      throw err;
    }
    const waitedMs = Date.now() - start;
    metrics.wait.observe(waitedMs / 1000);
    metrics.requests.inc({ mode: 'queued', result: 'ok' });
    return { mode: 'queued', waitedMs };
  }
}
