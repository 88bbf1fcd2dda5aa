import { TicksError } from '../lib/errors.js';

/**
 * The prekey directory for Signal-protocol style clients (X3DH). The server only stores and hands
 * out public key material: every key and signature is opaque bytes to it (it never verifies a
 * signature; clients do).
 *
 * Each device publishes:
 * - its identity key (long-term public key),
 * - one signed prekey (keyId, public key, the identity key's signature over it), replaced on rotation,
 * - a batch of one-time prekeys (keyId, public key), added to those it already has.
 *
 * Contract (both implementations, checked by test/contract/keys.test.ts):
 * - `publish` replaces the identity key and signed prekey and adds the one-time prekeys. A one-time
 *   keyId the device already has keeps its stored key (a retried upload is harmless). When the
 *   identity key changes (reinstall), every one-time prekey of the old identity is dropped first.
 *   More than `maxOneTimePreKeys` stored for the device is `keys.too_many` and nothing is written.
 * - `fetchBundle` hands out the device's identity key, signed prekey and at most one one-time
 *   prekey, which it removes atomically: under any number of concurrent fetches (threads, processes
 *   or nodes), each one-time prekey is handed out at most once. When the device has none left, the
 *   bundle carries `oneTimePreKey: null` (X3DH then runs without one). A prekey whose removal had an
 *   unknown outcome (a store timeout) is never handed out: it may be lost, never given twice.
 * - `remaining` in a bundle is the count left after this fetch; below the configured threshold the
 *   caller signals the device to upload more (src/keys/http.ts).
 * - Errors: `keys.invalid` (bad input, not retryable), `keys.too_many`, `keys.contended` (a fetch lost
 *   every claim race several times in a row; retryable), and StoreError codes from the engines.
 */
export interface KeyStore {
  readonly engine: 'embedded' | 'scylla';
  open(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  publish(user: string, device: string, keys: DeviceKeysUpload, nowMs: number): Promise<PublishResult>;
  /** One device's bundle, consuming one one-time prekey; null when the device published nothing. */
  fetchBundle(user: string, device: string): Promise<PreKeyBundle | null>;
  /** A bundle for every device of `user` that published keys (each consumes one one-time prekey). */
  fetchBundles(user: string): Promise<PreKeyBundle[]>;
  /** One-time prekeys the device has left (0 when it published nothing). */
  countOneTime(user: string, device: string): Promise<number>;
  /** Forgets the device's keys (device removed). A no-op when it has none. */
  removeDevice(user: string, device: string): Promise<void>;
}

export interface SignedPreKey {
  keyId: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export interface OneTimePreKey {
  keyId: number;
  publicKey: Uint8Array;
}

export interface DeviceKeysUpload {
  identityKey: Uint8Array;
  signedPreKey: SignedPreKey;
  oneTimePreKeys: OneTimePreKey[];
}

export interface PublishResult {
  /** One-time prekeys stored for the device after this publish. */
  oneTimeCount: number;
  identityChanged: boolean;
}

export interface PreKeyBundle {
  user: string;
  device: string;
  identityKey: Uint8Array;
  signedPreKey: SignedPreKey;
  oneTimePreKey: OneTimePreKey | null;
  /** One-time prekeys left for the device after this fetch. */
  remaining: number;
}

export interface KeyStoreLimits {
  /** One-time prekeys a device may have stored at once. */
  maxOneTimePreKeys: number;
}

export type KeyErrorCode = 'keys.invalid' | 'keys.too_many' | 'keys.contended';

export class KeyError extends TicksError {
  declare readonly code: KeyErrorCode;
  constructor(code: KeyErrorCode, message: string) {
    super(code, message, { retryable: code === 'keys.contended' });
    this.name = 'KeyError';
  }
}

/** Public keys and signatures are small (32-33 bytes for X25519/Ed25519, 64 for a signature). */
export const MAX_KEY_BYTES = 256;
/** Signal key ids are 24-bit; 32-bit leaves room. */
export const MAX_KEY_ID = 0xffff_ffff;

/** Checks an upload's shape and sizes; throws `keys.invalid` naming the field. */
export function validateUpload(u: DeviceKeysUpload, maxPerUpload: number): void {
  const bytes = (v: Uint8Array, field: string): void => {
    if (!(v instanceof Uint8Array) || v.length === 0 || v.length > MAX_KEY_BYTES) {
      throw new KeyError('keys.invalid', `${field} must be 1 to ${MAX_KEY_BYTES} bytes`);
    }
  };
  const keyId = (v: number, field: string): void => {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_KEY_ID) throw new KeyError('keys.invalid', `${field} must be an integer from 0 to ${MAX_KEY_ID}`);
  };
  bytes(u.identityKey, 'identityKey');
  keyId(u.signedPreKey.keyId, 'signedPreKey.keyId');
  bytes(u.signedPreKey.publicKey, 'signedPreKey.publicKey');
  bytes(u.signedPreKey.signature, 'signedPreKey.signature');
  if (u.oneTimePreKeys.length > maxPerUpload) {
    throw new KeyError('keys.invalid', `oneTimePreKeys has ${u.oneTimePreKeys.length} keys; at most ${maxPerUpload} per upload`);
  }
  u.oneTimePreKeys.forEach((k, i) => {
    keyId(k.keyId, `oneTimePreKeys[${i}].keyId`);
    bytes(k.publicKey, `oneTimePreKeys[${i}].publicKey`);
  });
}

/** The upload's one-time prekeys with repeated keyIds removed (the first wins). */
export function distinctOneTime(keys: readonly OneTimePreKey[]): OneTimePreKey[] {
  const seen = new Set<number>();
  return keys.filter((k) => !seen.has(k.keyId) && seen.add(k.keyId));
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
