import cassandra from 'cassandra-driver';
import { StoreError } from '../errors.js';

const { errors, types } = cassandra;
const codes = types.responseErrorCodes;

/**
 * Protocol v5's CAS_WRITE_UNKNOWN: an LWT whose outcome the coordinator could not learn. The driver
 * has no name for it (it speaks protocol v4, where the same case arrives as a CAS write timeout),
 * but a v5-speaking proxy could pass it through.
 */
const CAS_WRITE_UNKNOWN = 0x1700;

/** Server answers that mean "may or may not have been applied". */
const TIMEOUT_CODES = new Set<number>([codes.writeTimeout, codes.readTimeout, CAS_WRITE_UNKNOWN]);
/** Server answers that mean "not enough replicas / this node cannot serve now": retry later. */
const UNAVAILABLE_CODES = new Set<number>([codes.unavailableException, codes.overloaded, codes.isBootstrapping]);

/**
 * Maps anything cassandra-driver throws to a StoreError, by class and protocol error code only
 * (never by message text). Anything unrecognised is `store.internal`, which is not retryable.
 */
export function wrapDriverError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof errors.NoHostAvailableError || err instanceof errors.BusyConnectionError) {
    return new StoreError('store.unavailable', `cassandra unavailable: ${describe(err)}`, err);
  }
  if (err instanceof errors.OperationTimedOutError) {
    return new StoreError('store.timeout', `cassandra request timed out: ${describe(err)}`, err);
  }
  if (err instanceof errors.ResponseError) {
    if (TIMEOUT_CODES.has(err.code)) {
      return new StoreError('store.timeout', `cassandra timeout (0x${err.code.toString(16)}): ${describe(err)}`, err);
    }
    if (UNAVAILABLE_CODES.has(err.code)) {
      return new StoreError('store.unavailable', `cassandra unavailable (0x${err.code.toString(16)}): ${describe(err)}`, err);
    }
    return new StoreError('store.internal', `cassandra error (0x${err.code.toString(16)}): ${describe(err)}`, err);
  }
  return new StoreError('store.internal', `scylla store: ${describe(err)}`, err);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
