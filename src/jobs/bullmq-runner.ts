import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue, QueueEvents, UnrecoverableError, Worker, type Job, type RedisOptions } from 'bullmq';
import { countRedisError, wrapRedisError } from '../cluster/redis-client.js';
import { JobError, isPermanent, type JobErrorCode } from './errors.js';
import { forgetDepth, jobMetrics, reportDepth, type RunResult } from './metrics.js';
import {
  checkAdd,
  checkSpec,
  type AddOptions,
  type AddResult,
  type JobCounts,
  type JobHandler,
  type JobOutcome,
  type JobQueue,
  type JobRunner,
  type QueueSpec,
} from './runner.js';

export interface BullmqJobRunnerOptions {
  /** redis://[user:pass@]host:port[/db] */
  url: string;
  /** BullMQ key prefix (no trailing colon), e.g. `ticks:jobs`; every node of a cluster shares it. */
  prefix: string;
  /** CLIENT SETNAME of this runner's connections, e.g. `jobs-node1-0`. */
  name?: string;
}

const CONNECT_TIMEOUT_MS = 2_000;
/** Bound on a producer command: an enqueue on the delivery path fails fast rather than waiting. */
const COMMAND_TIMEOUT_MS = 2_000;
const FAILED_KEEP_S = 7 * 24 * 3600;
const FAILED_KEEP_COUNT = 10_000;
/**
 * Bound on every producer-side call. BullMQ waits for its connection to be ready without a limit, so
 * with Redis down an add would otherwise never settle.
 */
const CALL_TIMEOUT_MS = 3_000;
/** How often a waitFinished also reads the job's state, in case an event was lost. */
const WAIT_POLL_MS = 5_000;

/**
 * The cluster's job runner: BullMQ queues in Redis (contract in runner.ts). Each queue object owns a
 * producer `Queue` on a fail-fast connection (an enqueue answers `jobs.unavailable` within about two
 * seconds when Redis is down); `process` adds a `Worker` and `waitFinished` a `QueueEvents`, both on
 * connections BullMQ creates with `maxRetriesPerRequest: null`, as it requires for blocking commands.
 *
 * Idempotent ids with an answer: BullMQ's add returns the id whether or not the job already existed,
 * so each add stores a fresh nonce as the job's name and reads the name back; the job is ours (added)
 * when the nonce matches. One extra round trip per add.
 */
export class BullmqJobRunner implements JobRunner {
  readonly impl = 'redis';
  private readonly queues = new Map<string, BullmqJobQueue<unknown>>();
  private closed = false;
  private adminConn: Redis | null = null;

  constructor(private readonly opts: BullmqJobRunnerOptions) {
    if (opts.prefix === '' || opts.prefix.endsWith(':')) {
      throw new JobError('jobs.invalid', `BullMQ prefix ${JSON.stringify(opts.prefix)} must be non-empty without a trailing ':'`);
    }
  }

  /** @internal */
  connection(blocking: boolean, suffix: string): RedisOptions {
    return {
      url: this.opts.url,
      connectionName: `${this.opts.name ?? 'jobs'}-${suffix}`,
      connectTimeout: CONNECT_TIMEOUT_MS,
      ...(blocking
        ? { maxRetriesPerRequest: null }
        : { maxRetriesPerRequest: 1, commandTimeout: COMMAND_TIMEOUT_MS }),
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 4), 500),
    };
  }

  /** @internal A plain connection (no key prefix) for the few reads BullMQ has no method for. */
  admin(): Redis {
    if (this.adminConn === null) {
      const { url, ...opts } = this.connection(false, 'admin');
      this.adminConn = new Redis(url as string, opts);
      this.adminConn.on('error', countError);
    }
    return this.adminConn;
  }

  /** @internal */
  checkOpen(): void {
    if (this.closed) throw new JobError('jobs.unavailable', 'the job runner is closed');
  }

  get prefix(): string {
    return this.opts.prefix;
  }

  queue<T>(spec: QueueSpec): JobQueue<T> {
    this.checkOpen();
    const bad = checkSpec(spec);
    if (bad !== null) throw new JobError('jobs.invalid', bad);
    let q = this.queues.get(spec.name);
    if (q === undefined) {
      q = new BullmqJobQueue<unknown>(this, { ...spec });
      this.queues.set(spec.name, q);
      reportDepth(this.impl, q);
    }
    return q as unknown as JobQueue<T>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    for (const q of this.queues.values()) forgetDepth(this.impl, q);
    this.adminConn?.disconnect();
  }
}

class BullmqJobQueue<T> implements JobQueue<T> {
  private readonly queue: Queue;
  private worker: Worker | null = null;
  private events: QueueEvents | null = null;
  private eventsReady: Promise<void> | null = null;
  private readonly waiters = new Set<(err: JobError) => void>();

  constructor(
    private readonly runner: BullmqJobRunner,
    private readonly spec: QueueSpec,
  ) {
    this.queue = new Queue(spec.name, {
      connection: runner.connection(false, `${spec.name}-q`),
      prefix: runner.prefix,
      defaultJobOptions: {
        attempts: spec.attempts,
        backoff: { type: 'exponential', delay: spec.backoffMs },
        removeOnComplete: { age: Math.ceil(spec.keepFinishedMs / 1000) },
        removeOnFail: { age: Math.max(FAILED_KEEP_S, Math.ceil(spec.keepFinishedMs / 1000)), count: FAILED_KEEP_COUNT },
      },
    });
    // Errors reach callers through rejected calls; connection trouble is counted (without a listener
    // an 'error' event would throw).
    this.queue.on('error', countError);
  }

  get name(): string {
    return this.spec.name;
  }

  async add(data: T, opts?: AddOptions): Promise<AddResult> {
    const queue = this.name;
    try {
      this.runner.checkOpen();
      const bad = checkAdd(opts);
      if (bad !== null) throw new JobError('jobs.invalid', bad);
      if (JSON.stringify(data) === undefined) throw new JobError('jobs.invalid', `queue ${queue}: job data must be JSON`);
      const nonce = randomUUID();
      const { id, added } = await bounded(`add to ${queue}`, async () => {
        const job = await this.queue.add(nonce, data, {
          ...(opts?.id !== undefined ? { jobId: opts.id } : {}),
          ...(opts?.delayMs ? { delay: Math.ceil(opts.delayMs) } : {}),
        });
        if (opts?.id === undefined) return { id: job.id!, added: true };
        const stored = await this.queue.getJob(job.id!);
        // Gone already means it was added and ran and was evicted in between: it was ours.
        return { id: job.id!, added: stored === undefined || stored.name === nonce };
      });
      jobMetrics.enqueued.inc({ queue, impl: 'redis', result: added ? 'added' : 'duplicate' });
      return { id, added };
    } catch (err) {
      jobMetrics.enqueued.inc({ queue, impl: 'redis', result: 'error' });
      throw wrap(err);
    }
  }

  process(handler: JobHandler<T>): void {
    this.runner.checkOpen();
    if (this.worker !== null) throw new JobError('jobs.invalid', `queue ${this.name}: process() was already called`);
    const queue = this.name;
    this.worker = new Worker(
      queue,
      async (job: Job) => {
        const end = jobMetrics.duration.startTimer({ queue, impl: 'redis' });
        const attempt = job.attemptsStarted;
        try {
          await handler({
            id: job.id!,
            data: job.data as T,
            attempt,
            startedAtMs: job.processedOn ?? Date.now(),
            updateData: (d: T) => job.updateData(d),
          });
        } catch (err) {
          const result: RunResult = isPermanent(err) || attempt >= this.spec.attempts ? 'failed' : 'retry';
          end({ result });
          jobMetrics.runs.inc({ queue, impl: 'redis', result });
          if (isPermanent(err)) throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
          throw err;
        }
        end({ result: 'completed' });
        jobMetrics.runs.inc({ queue, impl: 'redis', result: 'completed' });
      },
      {
        connection: this.runner.connection(true, `${queue}-w`),
        prefix: this.runner.prefix,
        concurrency: this.spec.concurrency,
        ...(this.spec.limiter ? { limiter: { max: this.spec.limiter.max, duration: this.spec.limiter.durationMs } } : {}),
        // Short blocking waits so close() and a Redis restart are noticed quickly.
        drainDelay: 1,
      },
    );
    this.worker.on('error', countError);
  }

  async waitFinished(id: string, timeoutMs: number): Promise<JobOutcome> {
    this.runner.checkOpen();
    const events = this.startEvents();
    return await new Promise<JobOutcome>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearInterval(poll);
        events.off(`completed:${id}` as 'completed', onCompleted);
        events.off(`failed:${id}` as 'failed', onFailed);
        this.waiters.delete(cancel);
        fn();
      };
      const onCompleted = (): void => finish(() => resolve('completed'));
      const onFailed = (): void => finish(() => resolve('failed'));
      const cancel = (err: JobError): void => finish(() => reject(err));
      const timer = setTimeout(
        () => cancel(new JobError('jobs.timeout', `queue ${this.name}: job ${id} did not finish within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const look = async (): Promise<void> => {
        try {
          await this.eventsReady;
          const state = await bounded(`state of ${id}`, () => this.queue.getJobState(id));
          if (state === 'completed') onCompleted();
          else if (state === 'failed') onFailed();
          else if (state === 'unknown') cancel(new JobError('jobs.invalid', `queue ${this.name}: no job ${id}`));
        } catch (err) {
          // A failed look is not the end: the events stream or the next poll may still answer.
          if (err instanceof JobError && err.code === 'jobs.invalid') cancel(err);
        }
      };
      // A safety net for events lost in a reconnect; events are the fast path.
      const poll = setInterval(() => void look(), WAIT_POLL_MS);
      this.waiters.add(cancel);
      events.on(`completed:${id}` as 'completed', onCompleted);
      events.on(`failed:${id}` as 'failed', onFailed);
      // Listen first, then look: a job that finished before the listener existed is found here.
      void look();
    });
  }

  async counts(): Promise<JobCounts> {
    try {
      const c = await bounded(`counts of ${this.name}`, () =>
        this.queue.getJobCounts('waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized'),
      );
      return {
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        delayed: c.delayed ?? 0,
        active: c.active ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
      };
    } catch (err) {
      throw wrap(err);
    }
  }

  async close(): Promise<void> {
    for (const cancel of [...this.waiters]) cancel(new JobError('jobs.unavailable', 'the job runner closed'));
    // The worker first: it stops fetching and waits for its active jobs (drain).
    if (this.worker !== null) await this.worker.close().catch(() => {});
    await Promise.all([this.events?.close().catch(() => {}), this.queue.close().catch(() => {})]);
  }

  /**
   * The events reader starts at the stream's tail as read before it starts (not at `$`, BullMQ's
   * default, which is wherever its first XREAD lands): every finish after that point arrives as an
   * event, and every finish before it is seen by the state look that follows each listener.
   */
  private startEvents(): QueueEvents {
    if (this.events === null) {
      const events = (this.events = new QueueEvents(this.name, {
        connection: this.runner.connection(true, `${this.name}-e`),
        prefix: this.runner.prefix,
        autorun: false,
      }));
      events.on('error', countError);
      this.eventsReady = (async () => {
        const last = await this.runner.admin().xrevrange(this.queue.toKey('events'), '+', '-', 'COUNT', 1);
        (events.opts as { lastEventId?: string }).lastEventId = last[0]?.[0] ?? '0-0';
        void events.run().catch(() => {});
        await events.waitUntilReady();
      })();
      this.eventsReady.catch(() => {});
    }
    return this.events;
  }
}

const CLUSTER_TO_JOB: Record<string, JobErrorCode> = {
  'cluster.unavailable': 'jobs.unavailable',
  'cluster.timeout': 'jobs.timeout',
  'cluster.invalid': 'jobs.invalid',
  'cluster.internal': 'jobs.internal',
};

async function bounded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new JobError('jobs.timeout', `Redis (jobs): ${what} did not complete within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Counts against ticks_cluster_redis_errors_total{component="jobs"}, like the cluster components. */
function countError(err: unknown): void {
  countRedisError('jobs', wrapRedisError(err));
}

function wrap(err: unknown): JobError {
  if (err instanceof JobError) return err;
  const c = wrapRedisError(err);
  return new JobError(CLUSTER_TO_JOB[c.code] ?? 'jobs.internal', c.message.replace(/^Redis/, 'Redis (jobs)'), err);
}
