/**
 * Background jobs: the one interface both runners implement.
 *
 * - `BullmqJobRunner` (bullmq-runner.ts): queues in Redis, shared by every node of a cluster; the
 *   rate limit and the job ids are cluster-wide.
 * - `MemoryJobRunner` (memory-runner.ts): the embedded mode's runner, in one process, with the same
 *   semantics; jobs are lost when the process ends (push and flush permits are soft work).
 * Both pass test/contract/jobs.test.ts.
 *
 * The contract:
 * - **Idempotent ids.** `add` with the id of a job that is waiting, delayed, active, or finished less
 *   than `keepFinishedMs` ago adds nothing and answers `added: false` (a finished job's id may be
 *   remembered longer: BullMQ evicts lazily). Without an id every add is a new job.
 * - **Delay.** A job added with `delayMs` does not start before that time has passed.
 * - **Retries.** A handler that throws is retried after `backoffMs`, doubling each attempt, until
 *   `attempts` tries were made; then the job is failed. A handler error that says `retryable: false`
 *   (PermanentJobFailure, or any TicksError marked so) fails the job at once. `updateData` persists
 *   new data for the next attempt (e.g. the devices still to be sent to).
 * - **Rate limit.** With `limiter`, at most `max` jobs start per window of `durationMs`, over every
 *   worker of the queue (all nodes for BullMQ; the process for memory). A window opens at the first
 *   start after the previous window ended (fixed windows, BullMQ's semantics).
 * - **Concurrency.** Each `process` call (one per node or thread) runs at most `concurrency` jobs of
 *   the queue at once.
 * - **Close.** `close` stops taking jobs, waits for the active ones to end (drain), then releases
 *   connections. Jobs still queued stay queued (in Redis) or are dropped (memory). Idempotent. Calls
 *   after close reject with `jobs.unavailable`.
 * - Delivery is at-least-once: a job whose worker died mid-run is run again (BullMQ's stalled-job
 *   check), so handlers must be idempotent.
 * - Data must be plain JSON (it is stored as JSON in Redis; the memory runner copies it the same way).
 * - Every rejection is a JobError.
 */

export interface QueueSpec {
  /** `[a-z][a-z0-9-]{0,31}`; a fixed name chosen by code (it is a metric label). */
  name: string;
  /** Jobs one `process` call runs at once. */
  concurrency: number;
  /** Total tries of a job, at least 1. */
  attempts: number;
  /** Delay before the first retry; doubles each further retry. */
  backoffMs: number;
  /** Cluster-wide start-rate limit. */
  limiter?: { max: number; durationMs: number };
  /** How long a finished job's id keeps later adds with that id from adding anything. */
  keepFinishedMs: number;
}

export interface JobContext<T> {
  readonly id: string;
  readonly data: T;
  /** 1 on the first try. */
  readonly attempt: number;
  /**
   * When the runner started this attempt (ms since the epoch): for BullMQ the time the worker asked
   * Redis for the job, recorded with it; for memory the grant. Unaffected by how late the handler
   * itself got the CPU, so tests count rate-limited starts with it.
   */
  readonly startedAtMs: number;
  /** Replaces the job's data for the following attempts. */
  updateData(data: T): Promise<void>;
}

export type JobHandler<T> = (job: JobContext<T>) => Promise<void>;

export interface AddOptions {
  /** `[A-Za-z0-9_.|@-]{1,200}`, not all digits. */
  id?: string;
  delayMs?: number;
}

export interface AddResult {
  id: string;
  /** False when a job with this id already existed (nothing was added). */
  added: boolean;
}

export interface JobCounts {
  waiting: number;
  delayed: number;
  active: number;
  completed: number;
  failed: number;
}

export type JobOutcome = 'completed' | 'failed';

export interface JobQueue<T> {
  readonly name: string;
  add(data: T, opts?: AddOptions): Promise<AddResult>;
  /** Starts this node's worker for the queue; call at most once per queue object. */
  process(handler: JobHandler<T>): void;
  /**
   * Resolves when the job has finished (after its last attempt); at once when it already has.
   * `jobs.timeout` after `timeoutMs`; `jobs.invalid` when no such job is known.
   */
  waitFinished(id: string, timeoutMs: number): Promise<JobOutcome>;
  counts(): Promise<JobCounts>;
}

export interface JobRunner {
  readonly impl: 'memory' | 'redis';
  /** The queue `spec.name` on this runner; the same object for the same name. */
  queue<T>(spec: QueueSpec): JobQueue<T>;
  close(): Promise<void>;
}

const QUEUE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const JOB_ID = /^[A-Za-z0-9_.|@-]{1,200}$/;

/** Validation shared by both runners, so both reject the same input the same way. */
export function checkSpec(spec: QueueSpec): string | null {
  if (!QUEUE_NAME.test(spec.name)) return `queue name ${JSON.stringify(spec.name)} must match ${QUEUE_NAME}`;
  if (!Number.isInteger(spec.concurrency) || spec.concurrency < 1) return `queue ${spec.name}: concurrency must be an integer >= 1`;
  if (!Number.isInteger(spec.attempts) || spec.attempts < 1) return `queue ${spec.name}: attempts must be an integer >= 1`;
  if (!Number.isInteger(spec.backoffMs) || spec.backoffMs < 0) return `queue ${spec.name}: backoffMs must be an integer >= 0`;
  if (!Number.isInteger(spec.keepFinishedMs) || spec.keepFinishedMs < 1000) return `queue ${spec.name}: keepFinishedMs must be an integer >= 1000`;
  const l = spec.limiter;
  if (l !== undefined && (!Number.isInteger(l.max) || l.max < 1 || !Number.isInteger(l.durationMs) || l.durationMs < 1)) {
    return `queue ${spec.name}: limiter needs integer max >= 1 and durationMs >= 1`;
  }
  return null;
}

export function checkAdd(opts: AddOptions | undefined): string | null {
  if (opts?.id !== undefined && (!JOB_ID.test(opts.id) || /^\d+$/.test(opts.id))) {
    return `job id ${JSON.stringify(opts.id)} must match ${JOB_ID} and not be all digits`;
  }
  if (opts?.delayMs !== undefined && (!Number.isFinite(opts.delayMs) || opts.delayMs < 0)) {
    return `delayMs must be a number >= 0, got ${String(opts.delayMs)}`;
  }
  return null;
}

/** JSON copy of job data: what a job stored in Redis would read back as. */
export function copyData<T>(data: T): T {
  const text = JSON.stringify(data);
  if (text === undefined) throw new TypeError('job data must be JSON');
  return JSON.parse(text) as T;
}
