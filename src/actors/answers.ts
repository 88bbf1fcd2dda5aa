/**
 * How failures inside the actor layer become error frames. One place, so the same failure always
 * gives the client the same stable code and retry flag.
 */
import { errorFrame, type ErrorFrame } from '../protocol/client-frames.js';
import type { ErrorCode } from '../protocol/codes.js';
import { isTicksError } from '../lib/errors.js';
import type { RejectReason } from './host.js';

/** The protocol code for a store failure (a StoreError code such as 'store.timeout'). */
export function storeFailureCode(storeCode: string | undefined): ErrorCode {
  switch (storeCode) {
    case 'store.not_found':
      return 'not_found';
    case 'store.invalid':
      return 'invalid_field';
    case 'store.unavailable':
    case 'store.timeout':
    // Fencing lost (another activation took over, or a restart raced this one): nothing of the
    // failed batch was written, so the same send, retried, lands with the new owner.
    case 'store.stale_epoch':
    case 'store.conflict':
      return 'store_unavailable';
    default:
      return 'internal';
  }
}

export function errorCodeOf(err: unknown): ErrorCode {
  if (!isTicksError(err)) return 'internal';
  // Cluster failures (directory, bus): ownership moving or Redis unreachable; nothing was written.
  if (err.code.startsWith('cluster.') && err.retryable) return 'cluster_unavailable';
  // Job runner failures (the offline-flush gate: Redis unreachable, no permit in time): retryable.
  if (err.code.startsWith('jobs.') && err.retryable) return 'cluster_unavailable';
  return storeFailureCode(err.code);
}

/**
 * The protocol code for a message an actor did not take. A full mailbox maps to
 * `too_many_inflight` ("retry after one is answered"): the protocol has no dedicated overload code
 * yet, and that one carries the right meaning and retry flag.
 */
export function rejectCode(reason: RejectReason, cause: unknown): ErrorCode {
  switch (reason) {
    case 'mailbox_full':
      return 'too_many_inflight';
    case 'shutting_down':
      return 'shutting_down';
    case 'activation_failed':
      return errorCodeOf(cause);
  }
}

// Partial: a code added to the protocol later still gets an answer (its own name) here.
const MESSAGES: Partial<Record<ErrorCode, string>> = {
  bad_frame: 'bad frame',
  unknown_type: 'unknown frame type',
  invalid_field: 'invalid field',
  frame_too_large: 'frame too large',
  body_too_large: 'body too large',
  rate_limited: 'rate limited',
  too_many_inflight: 'server busy, retry later',
  not_member: 'not a member of the conversation',
  not_found: 'conversation not found',
  forbidden: 'forbidden',
  store_unavailable: 'storage unavailable, retry',
  internal: 'internal error',
  shutting_down: 'server shutting down',
  unsupported_version: 'unsupported version',
  unauthorized: 'unauthorized',
};

export function errorFor(code: ErrorCode, id?: number, detail?: string): ErrorFrame {
  return errorFrame(code, detail ?? MESSAGES[code] ?? code.replace(/_/g, ' '), id);
}
