import { TicksError } from '../lib/errors.js';

/**
 * Cluster error codes. Every cluster implementation (directory, sessions, bus, presence) wraps
 * driver errors in a ClusterError with one of these codes; no ioredis error escapes `src/cluster/`.
 * Expected outcomes (a lost registration, a lease that is no longer ours) are results, not errors.
 */
export type ClusterErrorCode =
  /** Redis could not be reached, is loading, read-only, or the client is closed. */
  | 'cluster.unavailable'
  /** No reply in time; the operation may or may not have been applied. */
  | 'cluster.timeout'
  /** The arguments break the contract (malformed address, non-positive TTL). Not retryable. */
  | 'cluster.invalid'
  /** Anything else (an unexpected reply, a script error). Not retryable. */
  | 'cluster.internal';

const RETRYABLE: Record<ClusterErrorCode, boolean> = {
  'cluster.unavailable': true,
  'cluster.timeout': true,
  'cluster.invalid': false,
  'cluster.internal': false,
};

export class ClusterError extends TicksError {
  declare readonly code: ClusterErrorCode;

  constructor(code: ClusterErrorCode, message: string, cause?: unknown) {
    super(code, message, { retryable: RETRYABLE[code], cause });
    this.name = 'ClusterError';
  }
}

export const CLUSTER_ERROR_CODES = Object.keys(RETRYABLE) as ClusterErrorCode[];
