import { ClusterError } from '../errors.js';
import { MAX_SESSION_ID_LENGTH, type SessionConn } from './sessions.js';

export function checkId(what: 'user' | 'device', id: string): void {
  if (typeof id !== 'string' || id === '' || id.length > MAX_SESSION_ID_LENGTH) {
    throw new ClusterError(
      'cluster.invalid',
      `session ${what} ${JSON.stringify(id)} must be a non-empty string of at most ${MAX_SESSION_ID_LENGTH} characters`,
    );
  }
}

export function checkConn(conn: SessionConn): void {
  if (typeof conn?.node !== 'string' || conn.node === '' || typeof conn.connId !== 'string' || conn.connId === '') {
    throw new ClusterError('cluster.invalid', `session connection ${JSON.stringify(conn)} needs a non-empty node and connId`);
  }
}

export function checkTtlMs(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new ClusterError('cluster.invalid', `session ttlMs ${ttlMs} must be a positive integer`);
  }
}
