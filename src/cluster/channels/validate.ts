import { assertNodeId } from '../bus/bus.js';
import { ClusterError } from '../errors.js';
import { MAX_CHANNEL_ID_LENGTH } from './interest.js';

export function checkChannel(channel: string): void {
  if (typeof channel !== 'string' || channel === '' || channel.length > MAX_CHANNEL_ID_LENGTH) {
    throw new ClusterError('cluster.invalid', `channel ${JSON.stringify(channel)} must be a non-empty string of at most ${MAX_CHANNEL_ID_LENGTH} characters`);
  }
}

/** Endpoints are bus node ids (`<node>.<shard>`). */
export function checkEndpoint(endpoint: string): void {
  assertNodeId(endpoint);
}

export function checkTtlMs(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new ClusterError('cluster.invalid', `channel interest ttlMs ${ttlMs} must be a positive integer`);
}
