import cassandra from 'cassandra-driver';
import { StoreError } from '../errors.js';

const { types } = cassandra;

/** bigint columns arrive as driver Longs; seqs and epochs stay below 2^53 (see types.ts). */
export function num(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  if (types.Long.isLong(value)) return (value as InstanceType<typeof types.Long>).toNumber();
  if (typeof value === 'number') return value;
  throw new StoreError('store.internal', `unexpected numeric value from cassandra: ${typeof value}`);
}

export function numOr(value: unknown, fallback: number): number {
  return num(value) ?? fallback;
}

/** timestamp columns arrive as Date. */
export function ms(value: unknown): number {
  return value instanceof Date ? value.getTime() : 0;
}

/** The driver only encodes blobs from Buffer; wrap the caller's bytes without copying. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

export function invalid(message: string): StoreError {
  return new StoreError('store.invalid', message);
}

export function requireId(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${name} must be a non-empty string`);
  return value;
}

/** Most media ids one message may carry at the store level (the protocol allows fewer). */
export const MAX_MEDIA_PER_MESSAGE = 256;

export function requireSeq(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`${name} must be a non-negative safe integer, got ${String(value)}`);
  }
  return value;
}

export function requireLimit(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(`limit must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function requireMs(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(`${name} must be a finite number`);
  return value;
}
