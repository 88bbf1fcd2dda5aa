import type { AppendResult } from './types.js';
import { TicksError } from '../lib/errors.js';

/**
 * Store error codes. Engines wrap every driver error in a StoreError with one of these codes; no
 * cassandra-driver or lmdb error escapes `src/store/`.
 */
export type StoreErrorCode =
  /** The engine could not be reached or is not open (connection refused, no hosts, closed). */
  | 'store.unavailable'
  /** The operation timed out; it may or may not have been applied. */
  | 'store.timeout'
  /**
   * A writer's epoch is older than the conversation's current epoch: another activation owns the
   * conversation. Nothing was written. The writer is closed and must not be used again.
   */
  | 'store.stale_epoch'
  /**
   * A seq the writer tried to write already exists (another writer got there first). Nothing was
   * written by this batch and nothing existing was overwritten. The writer is closed.
   */
  | 'store.conflict'
  /** A referenced record (conversation) does not exist. */
  | 'store.not_found'
  /** The arguments break the contract (empty batch, negative seq, oversize field). */
  | 'store.invalid'
  /** The schema on disk is newer than this code understands, or a migration failed. */
  | 'store.schema'
  /** Anything else the engine reported. */
  | 'store.internal';

const RETRYABLE: Record<StoreErrorCode, boolean> = {
  'store.unavailable': true,
  'store.timeout': true,
  'store.stale_epoch': false,
  'store.conflict': false,
  'store.not_found': false,
  'store.invalid': false,
  'store.schema': false,
  'store.internal': false,
};

export class StoreError extends TicksError {
  declare readonly code: StoreErrorCode;
  /** Set by `ConversationWriter.append` when a multi-bucket batch committed a prefix before failing. */
  committed?: AppendResult[];

  constructor(code: StoreErrorCode, message: string, cause?: unknown) {
    super(code, message, { retryable: RETRYABLE[code], cause });
    this.name = 'StoreError';
  }
}

export const STORE_ERROR_CODES = Object.keys(RETRYABLE) as StoreErrorCode[];
