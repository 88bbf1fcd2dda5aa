import { TicksError } from '../lib/errors.js';

/**
 * Job error codes. Both runners (memory, BullMQ) wrap everything they throw in a JobError with one of
 * these codes; no ioredis or BullMQ error escapes `src/jobs/`. Expected outcomes (a duplicate job id,
 * an unregistered push token) are results, not errors.
 */
export type JobErrorCode =
  /** Redis could not be reached or the runner is closed. Retryable. */
  | 'jobs.unavailable'
  /** No answer in time (an enqueue, or a wait for a job to finish). Retryable. */
  | 'jobs.timeout'
  /** The arguments break the contract (bad queue name, bad job id, data that is not JSON). */
  | 'jobs.invalid'
  /** Anything else. */
  | 'jobs.internal';

const RETRYABLE: Record<JobErrorCode, boolean> = {
  'jobs.unavailable': true,
  'jobs.timeout': true,
  'jobs.invalid': false,
  'jobs.internal': false,
};

export class JobError extends TicksError {
  declare readonly code: JobErrorCode;

  constructor(code: JobErrorCode, message: string, cause?: unknown) {
    super(code, message, { retryable: RETRYABLE[code], cause });
    this.name = 'JobError';
  }
}

export const JOB_ERROR_CODES = Object.keys(RETRYABLE) as JobErrorCode[];

/**
 * Thrown by a job handler to end the job without further attempts (bad data, a misconfigured
 * provider). Any other error, and any error with `retryable: true`, is retried with backoff until the
 * queue's attempts are used up.
 */
export class PermanentJobFailure extends TicksError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { retryable: false, cause });
    this.name = 'PermanentJobFailure';
  }
}

/** True when a handler's error must not be retried: a TicksError that says `retryable: false`. */
export function isPermanent(err: unknown): boolean {
  return err instanceof TicksError && !err.retryable;
}
