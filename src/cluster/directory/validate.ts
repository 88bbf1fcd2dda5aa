import { ClusterError } from '../errors.js';
import { MAX_ADDRESS_LENGTH, type Activation } from './directory.js';

/** Throws `cluster.invalid` unless `address` is `kind/key` within the length limit. */
export function checkAddress(address: string): void {
  const slash = typeof address === 'string' ? address.indexOf('/') : -1;
  if (slash <= 0 || slash === address.length - 1 || address.length > MAX_ADDRESS_LENGTH) {
    throw new ClusterError(
      'cluster.invalid',
      `directory address ${JSON.stringify(address)} is not kind/key of at most ${MAX_ADDRESS_LENGTH} characters`,
    );
  }
}

export function checkActivation(activation: Activation): void {
  if (
    typeof activation?.node !== 'string' ||
    activation.node === '' ||
    typeof activation.activationId !== 'string' ||
    activation.activationId === ''
  ) {
    throw new ClusterError(
      'cluster.invalid',
      `directory activation ${JSON.stringify(activation)} needs a non-empty node and activationId`,
    );
  }
}

export function checkLeaseMs(leaseMs: number): void {
  if (!Number.isSafeInteger(leaseMs) || leaseMs <= 0) {
    throw new ClusterError('cluster.invalid', `directory leaseMs ${leaseMs} must be a positive integer`);
  }
}

/** The next epoch after `last`: strictly greater, and at least the issuing clock in µs-ish units. */
export function nextEpoch(last: number, nowMs: number): number {
  return Math.max(last + 1, Math.floor(nowMs) * 1000);
}
