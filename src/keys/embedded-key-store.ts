import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { StoreError } from '../store/errors.js';
import { wrapLmdbError } from '../store/embedded/lmdb-errors.js';
import {
  distinctOneTime,
  KeyError,
  sameBytes,
  type DeviceKeysUpload,
  type KeyStore,
  type KeyStoreLimits,
  type OneTimePreKey,
  type PreKeyBundle,
  type PublishResult,
  type SignedPreKey,
} from './key-store.js';
import { bundlesServed, measure } from './metrics.js';

/**
 * The prekey directory on lmdb (embedded mode), in its own environment (default
 * `<dataDir>/keys`). Tables:
 *   devices  [user, device]         -> { identityKey, signedPreKey, updatedAtMs }
 *   onetime  [user, device, keyId]  -> public key bytes
 *
 * Single consumption: a fetch reads the device's lowest one-time keyId and removes it inside one
 * lmdb write transaction. lmdb serializes write transactions across every thread and process that
 * opened the environment (one writer lock), so two fetches can never both read the same key as
 * present. Commits are synced before their promise resolves (as in the store).
 */
interface DeviceRow {
  identityKey: Uint8Array;
  signedPreKey: SignedPreKey;
  updatedAtMs: number;
}

/** Above every keyId (32-bit) and every device id, for range ends. */
const KEY_ID_END = 2 ** 32;
const DEVICE_END = '\uffff';

export class EmbeddedKeyStore implements KeyStore {
  readonly engine = 'embedded' as const;
  private root: RootDatabase | null = null;
  private devices!: Database<DeviceRow, Key>;
  private onetime!: Database<Uint8Array, Key>;

  constructor(
    private readonly path: string,
    private readonly limits: KeyStoreLimits,
  ) {}

  async open(): Promise<void> {
    if (this.root) return;
    try {
      const root = open({ path: this.path, overlappingSync: false, noSync: false, maxDbs: 4, useRecords: false } as Parameters<typeof open>[0] & {
        useRecords: boolean;
      });
      this.devices = root.openDB<DeviceRow, Key>({ name: 'devices' });
      this.onetime = root.openDB<Uint8Array, Key>({ name: 'onetime' });
      this.root = root;
    } catch (err) {
      throw wrapLmdbError(err);
    }
  }

  async close(): Promise<void> {
    const root = this.root;
    this.root = null;
    if (root) await root.close();
  }

  publish(user: string, device: string, keys: DeviceKeysUpload, nowMs: number): Promise<PublishResult> {
    return this.run('publish', (root) =>
      root.transaction(() => {
        const old = this.devices.get([user, device]);
        const identityChanged = old !== undefined && !sameBytes(old.identityKey, keys.identityKey);
        if (identityChanged) {
          for (const key of this.onetime.getKeys(this.range(user, device))) this.onetime.remove(key);
        }
        const existing = identityChanged ? 0 : this.onetime.getCount(this.range(user, device));
        const fresh = distinctOneTime(keys.oneTimePreKeys).filter((k) => identityChanged || this.onetime.get([user, device, k.keyId]) === undefined);
        if (existing + fresh.length > this.limits.maxOneTimePreKeys) {
          throw new KeyError(
            'keys.too_many',
            `device would hold ${existing + fresh.length} one-time prekeys; at most ${this.limits.maxOneTimePreKeys} (it has ${existing})`,
          );
        }
        this.devices.put([user, device], {
          identityKey: Buffer.from(keys.identityKey),
          signedPreKey: { keyId: keys.signedPreKey.keyId, publicKey: Buffer.from(keys.signedPreKey.publicKey), signature: Buffer.from(keys.signedPreKey.signature) },
          updatedAtMs: nowMs,
        });
        for (const k of fresh) this.onetime.put([user, device, k.keyId], Buffer.from(k.publicKey));
        return { oneTimeCount: existing + fresh.length, identityChanged };
      }),
    );
  }

  fetchBundle(user: string, device: string): Promise<PreKeyBundle | null> {
    return this.run('fetch_bundle', (root) => root.transaction(() => this.claim(user, device)));
  }

  fetchBundles(user: string): Promise<PreKeyBundle[]> {
    return this.run('fetch_bundles', (root) =>
      root.transaction(() => {
        const out: PreKeyBundle[] = [];
        for (const key of this.devices.getKeys({ start: [user, ''], end: [user, DEVICE_END] })) {
          const b = this.claim(user, String((key as Key[])[1]));
          if (b) out.push(b);
        }
        return out;
      }),
    );
  }

  countOneTime(user: string, device: string): Promise<number> {
    return this.run('count', () => this.onetime.getCount(this.range(user, device)));
  }

  removeDevice(user: string, device: string): Promise<void> {
    return this.run('remove_device', (root) =>
      root.transaction(() => {
        for (const key of this.onetime.getKeys(this.range(user, device))) this.onetime.remove(key);
        this.devices.remove([user, device]);
      }),
    );
  }

  /** Inside a write transaction: the bundle, with the lowest one-time prekey removed. */
  private claim(user: string, device: string): PreKeyBundle | null {
    const row = this.devices.get([user, device]);
    if (row === undefined) return null;
    let oneTimePreKey: OneTimePreKey | null = null;
    for (const { key, value } of this.onetime.getRange({ ...this.range(user, device), limit: 1 })) {
      oneTimePreKey = { keyId: Number((key as Key[])[2]), publicKey: value };
      this.onetime.remove(key);
    }
    bundlesServed.inc({ one_time: oneTimePreKey ? 'with' : 'without' });
    return {
      user,
      device,
      identityKey: row.identityKey,
      signedPreKey: row.signedPreKey,
      oneTimePreKey,
      remaining: this.onetime.getCount(this.range(user, device)),
    };
  }

  private range(user: string, device: string): { start: Key; end: Key } {
    return { start: [user, device, 0], end: [user, device, KEY_ID_END] };
  }

  private async run<T>(op: Parameters<typeof measure>[0], fn: (root: RootDatabase) => T | Promise<T>): Promise<T> {
    return measure(op, 'embedded', async () => {
      const root = this.root;
      if (!root) throw new StoreError('store.unavailable', 'key store is not open');
      try {
        return await fn(root);
      } catch (err) {
        if (err instanceof KeyError) throw err;
        throw wrapLmdbError(err);
      }
    });
  }
}
