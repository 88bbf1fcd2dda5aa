import { StoreError } from '../errors.js';

/**
 * Maps whatever lmdb, msgpackr or the file system threw to a StoreError. `closed` is the engine's own
 * knowledge that it is not open; lmdb's messages for a closed environment are matched only as a
 * fallback for races with `close()`, since lmdb gives those errors no code.
 */
export function wrapLmdbError(err: unknown, closed = false): StoreError {
  if (err instanceof StoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (closed || CLOSED_MESSAGES.some((m) => message.includes(m))) {
    return new StoreError('store.unavailable', `embedded store is not open: ${message}`, err);
  }
  return new StoreError('store.internal', `embedded store (lmdb) failed: ${message}`, err);
}

const CLOSED_MESSAGES = [
  'Database is closed',
  'database has been closed',
  'from a closed database',
];

export function notOpen(): StoreError {
  return new StoreError('store.unavailable', 'embedded store is not open (call open() first, or it was closed)');
}
