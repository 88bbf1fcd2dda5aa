import { isPermanent, JobError } from './errors.js';
import { jobMetrics, forgetDepth, reportDepth, type RunResult } from './metrics.js';
import {
  checkAdd,
  checkSpec,
  copyData,
  type AddOptions,
  type AddResult,
  type JobCounts,
  type JobHandler,
  type JobOutcome,
  type JobQueue,
  type JobRunner,
  type QueueSpec,
} from './runner.js';

/**
 * The embedded mode's job runner: the contract of runner.ts in one process. Several runners may share
 * one `MemoryJobBackend` (like several nodes sharing one Redis), which is how the contract suite
 * checks that the rate limit and the job ids hold across workers; by default each runner has its own.
 * Jobs live in memory only: they are dropped when the backend's last runner closes.
 */
export class MemoryJobBackend {
  /** @internal */
  readonly queues = new Map<string, QueueState>();
}

interface MemJob {
  id: string;
  data: unknown;
  state: 'waiting' | 'delayed' | 'active' | 'completed' | 'failed';
  /** Attempts started so far. */
  attempts: number;
  runAt: number;
  finishedAt: number;
  waiters: ((o: JobOutcome) => void)[];
}

interface Worker {
  runner: MemoryJobRunner;
  handler: JobHandler<unknown>;
  concurrency: number;
  active: Set<Promise<void>>;
  closing: boolean;
}

class QueueState {
  readonly jobs = new Map<string, MemJob>();
  /** Ready jobs in start order. */
  readonly ready: MemJob[] = [];
  readonly delayed = new Set<MemJob>();
  /** Finished jobs in finish order, which is also their eviction order (one keepFinishedMs). */
  private readonly finished = new Map<string, MemJob>();
  readonly workers: Worker[] = [];
  private rr = 0;
  private windowStart = -Infinity;
  private windowCount = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private nextAutoId = 1;
  completed = 0;
  failed = 0;

  constructor(readonly spec: QueueSpec) {}

  autoId(): string {
    return `m${this.nextAutoId++}`;
  }

  /** Starts every job that may start now and arms one timer for the next moment something may. */
  pump(): void {
    const now = Date.now();
    this.evict(now);
    let wakeAt = Infinity;
    for (const j of this.delayed) {
      if (j.runAt <= now) {
        this.delayed.delete(j);
        j.state = 'waiting';
        this.ready.push(j);
      } else wakeAt = Math.min(wakeAt, j.runAt);
    }
    while (this.ready.length > 0) {
      const worker = this.pickWorker();
      if (worker === null) break;
      const limiter = this.spec.limiter;
      if (limiter !== undefined) {
        if (now >= this.windowStart + limiter.durationMs) {
          this.windowStart = now;
          this.windowCount = 0;
        }
        if (this.windowCount >= limiter.max) {
          wakeAt = Math.min(wakeAt, this.windowStart + limiter.durationMs);
          break;
        }
        this.windowCount++;
      }
      this.start(worker, this.ready.shift()!, now);
    }
    this.arm(wakeAt);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (at === Infinity || at >= this.timerAt) return;
    this.stop();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.pump();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private pickWorker(): Worker | null {
    const n = this.workers.length;
    for (let i = 0; i < n; i++) {
      const w = this.workers[(this.rr + i) % n]!;
      if (!w.closing && w.active.size < w.concurrency) {
        this.rr = (this.rr + i + 1) % n;
        return w;
      }
    }
    return null;
  }

  /** `now` is the limiter's clock for this grant, reported as the attempt's startedAtMs. */
  private start(worker: Worker, job: MemJob, now: number): void {
    job.state = 'active';
    job.attempts++;
    const impl = 'memory';
    const queue = this.spec.name;
    const end = jobMetrics.duration.startTimer({ queue, impl });
    const ctx = {
      id: job.id,
      data: copyData(job.data),
      attempt: job.attempts,
      startedAtMs: now,
      updateData: async (data: unknown) => {
        job.data = copyData(data);
      },
    };
    const run = (async () => {
      let result: RunResult;
      try {
        await worker.handler(ctx);
        result = 'completed';
      } catch (err) {
        result = isPermanent(err) || job.attempts >= this.spec.attempts ? 'failed' : 'retry';
      }
      end({ result });
      jobMetrics.runs.inc({ queue, impl, result });
      const now = Date.now();
      if (result === 'retry') {
        job.state = 'delayed';
        job.runAt = now + this.spec.backoffMs * 2 ** (job.attempts - 1);
        this.delayed.add(job);
      } else {
        job.state = result;
        job.finishedAt = now;
        this.finished.set(job.id, job);
        if (result === 'completed') this.completed++;
        else this.failed++;
        for (const w of job.waiters.splice(0)) w(result);
      }
    })();
    worker.active.add(run);
    void run.finally(() => {
      worker.active.delete(run);
      this.pump();
    });
  }

  private evict(now: number): void {
    for (const [id, j] of this.finished) {
      if (now - j.finishedAt < this.spec.keepFinishedMs) break;
      this.finished.delete(id);
      this.jobs.delete(id);
      if (j.state === 'completed') this.completed--;
      else this.failed--;
    }
  }
}

class MemoryJobQueue<T> implements JobQueue<T> {
  private worker: Worker | null = null;

  constructor(
    private readonly runner: MemoryJobRunner,
    private readonly state: QueueState,
  ) {}

  get name(): string {
    return this.state.spec.name;
  }

  add(data: T, opts?: AddOptions): Promise<AddResult> {
    const queue = this.name;
    try {
      this.runner.checkOpen();
      const bad = checkAdd(opts);
      if (bad !== null) throw new JobError('jobs.invalid', bad);
      let copy: unknown;
      try {
        copy = copyData(data);
      } catch (err) {
        throw new JobError('jobs.invalid', `queue ${queue}: job data must be JSON`, err);
      }
      this.state.pump(); // evicts expired finished jobs first, so their ids are free again
      const id = opts?.id ?? this.state.autoId();
      if (this.state.jobs.has(id)) {
        jobMetrics.enqueued.inc({ queue, impl: 'memory', result: 'duplicate' });
        return Promise.resolve({ id, added: false });
      }
      const delayMs = opts?.delayMs ?? 0;
      const job: MemJob = { id, data: copy, state: 'waiting', attempts: 0, runAt: Date.now() + delayMs, finishedAt: 0, waiters: [] };
      this.state.jobs.set(id, job);
      if (delayMs > 0) {
        job.state = 'delayed';
        this.state.delayed.add(job);
      } else this.state.ready.push(job);
      jobMetrics.enqueued.inc({ queue, impl: 'memory', result: 'added' });
      this.state.pump();
      return Promise.resolve({ id, added: true });
    } catch (err) {
      jobMetrics.enqueued.inc({ queue, impl: 'memory', result: 'error' });
      return Promise.reject(err as Error);
    }
  }

  process(handler: JobHandler<T>): void {
    this.runner.checkOpen();
    if (this.worker !== null) throw new JobError('jobs.invalid', `queue ${this.name}: process() was already called`);
    this.worker = {
      runner: this.runner,
      handler: handler as JobHandler<unknown>,
      concurrency: this.state.spec.concurrency,
      active: new Set(),
      closing: false,
    };
    this.state.workers.push(this.worker);
    this.state.pump();
  }

  waitFinished(id: string, timeoutMs: number): Promise<JobOutcome> {
    try {
      this.runner.checkOpen();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    this.state.pump();
    const job = this.state.jobs.get(id);
    if (job === undefined) return Promise.reject(new JobError('jobs.invalid', `queue ${this.name}: no job ${id}`));
    if (job.state === 'completed' || job.state === 'failed') return Promise.resolve(job.state);
    return new Promise<JobOutcome>((resolve, reject) => {
      const done = (o: JobOutcome): void => {
        clearTimeout(timer);
        this.runner.waiters.delete(cancel);
        resolve(o);
      };
      const cancel = (err: JobError): void => {
        clearTimeout(timer);
        job.waiters = job.waiters.filter((w) => w !== done);
        this.runner.waiters.delete(cancel);
        reject(err);
      };
      const timer = setTimeout(() => cancel(new JobError('jobs.timeout', `queue ${this.name}: job ${id} did not finish within ${timeoutMs} ms`)), timeoutMs);
      job.waiters.push(done);
      this.runner.waiters.add(cancel);
    });
  }

  counts(): Promise<JobCounts> {
    const s = this.state;
    let active = 0;
    for (const w of s.workers) active += w.active.size;
    return Promise.resolve({ waiting: s.ready.length, delayed: s.delayed.size, active, completed: s.completed, failed: s.failed });
  }

  /** Stops taking jobs and waits for the active ones. */
  async closeWorker(): Promise<void> {
    const w = this.worker;
    if (w === null) return;
    w.closing = true;
    while (w.active.size > 0) await Promise.allSettled([...w.active]);
    const i = this.state.workers.indexOf(w);
    if (i >= 0) this.state.workers.splice(i, 1);
  }
}

export interface MemoryJobRunnerOptions {
  /** Shared state; a runner of its own when omitted. */
  backend?: MemoryJobBackend;
}

export class MemoryJobRunner implements JobRunner {
  readonly impl = 'memory';
  private readonly backend: MemoryJobBackend;
  private readonly queues = new Map<string, MemoryJobQueue<unknown>>();
  /** @internal Pending waitFinished calls, rejected on close. */
  readonly waiters = new Set<(err: JobError) => void>();
  private closed = false;
  private static readonly runnersOf = new WeakMap<MemoryJobBackend, Set<MemoryJobRunner>>();

  constructor(opts: MemoryJobRunnerOptions = {}) {
    this.backend = opts.backend ?? new MemoryJobBackend();
    let set = MemoryJobRunner.runnersOf.get(this.backend);
    if (set === undefined) MemoryJobRunner.runnersOf.set(this.backend, (set = new Set()));
    set.add(this);
  }

  /** @internal */
  checkOpen(): void {
    if (this.closed) throw new JobError('jobs.unavailable', 'the job runner is closed');
  }

  queue<T>(spec: QueueSpec): JobQueue<T> {
    this.checkOpen();
    const bad = checkSpec(spec);
    if (bad !== null) throw new JobError('jobs.invalid', bad);
    const mine = this.queues.get(spec.name);
    if (mine !== undefined) return mine as unknown as JobQueue<T>;
    let state = this.backend.queues.get(spec.name);
    if (state === undefined) this.backend.queues.set(spec.name, (state = new QueueState({ ...spec })));
    const q = new MemoryJobQueue<unknown>(this, state);
    this.queues.set(spec.name, q);
    reportDepth(this.impl, q);
    return q as unknown as JobQueue<T>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const cancel of [...this.waiters]) cancel(new JobError('jobs.unavailable', 'the job runner closed'));
    await Promise.all([...this.queues.values()].map((q) => q.closeWorker()));
    for (const q of this.queues.values()) forgetDepth(this.impl, q);
    const runners = MemoryJobRunner.runnersOf.get(this.backend);
    runners?.delete(this);
    if (runners === undefined || runners.size === 0) {
      for (const s of this.backend.queues.values()) s.stop();
      this.backend.queues.clear();
    } else {
      // Other runners share the backend: let them take what this one no longer runs.
      for (const s of this.backend.queues.values()) s.pump();
    }
  }
}
