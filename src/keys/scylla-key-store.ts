import { randomInt } from 'node:crypto';
import { StoreError } from '../store/errors.js';
import type { ScyllaStoreOptions } from '../store/options.js';
import { numOr } from '../store/scylla/values.js';
import { openAuxClient, type AuxClient, type AuxRow, type AuxTable } from '../store/scylla/aux-tables.js';
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
} from './key-store.js';
import { bundlesServed, claimConflicts, measure } from './metrics.js';

/**
 * The prekey directory on ScyllaDB (tested on Cassandra 5), in the store's keyspace.
 *
 * One-time prekeys live in one partition per device, clustered by keyId. Single consumption is a
 * per-key claim with a lightweight transaction, CQL that both ScyllaDB and Cassandra accept:
 *
 *   DELETE FROM prekey_onetime WHERE user_id = ? AND device_id = ? AND key_id = ? IF public_key = ?
 *
 * Only the fetch whose DELETE was applied hands the key out; a fetch that lost the race (not applied:
 * the row is gone) tries another candidate. Candidates are picked at random among the first few
 * rows, so concurrent fetches of one device mostly aim at different keys. The condition on the value
 * (not just IF EXISTS) makes the handed-out bytes exactly the deleted ones.
 *
 * Every write to `prekey_onetime` is an LWT (inserts are `IF NOT EXISTS` in one conditional batch per
 * upload: one partition), so the table never mixes Paxos and plain writes, whose timestamps could
 * otherwise order a re-insert before an earlier claim.
 */
export const KEY_TABLES: readonly AuxTable[] = [
  {
    name: 'prekey_devices',
    cql: (ks) => `CREATE TABLE IF NOT EXISTS ${ks}.prekey_devices (
      user_id text, device_id text, identity_key blob, spk_id bigint, spk_public blob, spk_signature blob, updated_at bigint,
      PRIMARY KEY (user_id, device_id))`,
  },
  {
    name: 'prekey_onetime',
    cql: (ks) => `CREATE TABLE IF NOT EXISTS ${ks}.prekey_onetime (
      user_id text, device_id text, key_id bigint, public_key blob,
      PRIMARY KEY ((user_id, device_id), key_id))`,
  },
];

/** Rows read per claim round; a fetch picks among them at random. */
const CANDIDATES = 16;
/** Claim rounds before a fetch gives up with `keys.contended` (retryable). */
const MAX_ROUNDS = 20;
/** Conditional inserts per batch (one partition; Cassandra warns on very large batches). */
const INSERT_BATCH = 50;

export class ScyllaKeyStore implements KeyStore {
  readonly engine = 'scylla' as const;
  private aux: AuxClient | null = null;
  private q!: ReturnType<typeof statements>;
  /** Per device: the tail of this instance's claim queue (see `claim`). */
  private readonly claiming = new Map<string, Promise<void>>();

  constructor(
    private readonly opts: ScyllaStoreOptions,
    private readonly limits: KeyStoreLimits,
  ) {}

  async open(): Promise<void> {
    if (this.aux) return;
    this.aux = await openAuxClient(this.opts, KEY_TABLES);
    this.q = statements(this.opts.keyspace);
  }

  async close(): Promise<void> {
    const aux = this.aux;
    this.aux = null;
    await aux?.close();
  }

  publish(user: string, device: string, keys: DeviceKeysUpload, nowMs: number): Promise<PublishResult> {
    return measure('publish', 'scylla', async () => {
      const aux = await this.client();
      const old = (await aux.read(this.q.selectDevice, [user, device]))[0];
      const identityChanged = old !== undefined && !sameBytes(old.get('identity_key') as Buffer, keys.identityKey);
      if (identityChanged) await this.deleteAllOneTime(aux, user, device);
      const have = new Set(identityChanged ? [] : (await aux.read(this.q.selectKeyIds, [user, device])).map((r) => numOr(r.get('key_id'), 0)));
      const fresh = distinctOneTime(keys.oneTimePreKeys).filter((k) => !have.has(k.keyId));
      if (have.size + fresh.length > this.limits.maxOneTimePreKeys) {
        throw new KeyError(
          'keys.too_many',
          `device would hold ${have.size + fresh.length} one-time prekeys; at most ${this.limits.maxOneTimePreKeys} (it has ${have.size})`,
        );
      }
      // One-time prekeys first: a bundle is only served once the device row exists.
      for (let i = 0; i < fresh.length; i += INSERT_BATCH) await this.insertOneTime(aux, user, device, fresh.slice(i, i + INSERT_BATCH));
      const spk = keys.signedPreKey;
      await aux.write(this.q.upsertDevice, [
        user,
        device,
        Buffer.from(keys.identityKey),
        spk.keyId,
        Buffer.from(spk.publicKey),
        Buffer.from(spk.signature),
        nowMs,
      ]);
      return { oneTimeCount: await this.count(aux, user, device), identityChanged };
    });
  }

  fetchBundle(user: string, device: string): Promise<PreKeyBundle | null> {
    return measure('fetch_bundle', 'scylla', async () => {
      const aux = await this.client();
      const row = (await aux.read(this.q.selectDevice, [user, device]))[0];
      return row ? this.bundleOf(aux, user, row) : null;
    });
  }

  fetchBundles(user: string): Promise<PreKeyBundle[]> {
    return measure('fetch_bundles', 'scylla', async () => {
      const aux = await this.client();
      const rows = await aux.read(this.q.selectDevices, [user]);
      return Promise.all(rows.map((row) => this.bundleOf(aux, user, row)));
    });
  }

  countOneTime(user: string, device: string): Promise<number> {
    return measure('count', 'scylla', async () => this.count(await this.client(), user, device));
  }

  removeDevice(user: string, device: string): Promise<void> {
    return measure('remove_device', 'scylla', async () => {
      const aux = await this.client();
      await aux.write(this.q.deleteDevice, [user, device]);
      await this.deleteAllOneTime(aux, user, device);
    });
  }

  private async bundleOf(aux: AuxClient, user: string, row: AuxRow): Promise<PreKeyBundle> {
    const device = String(row.get('device_id'));
    const oneTimePreKey = await this.claim(aux, user, device);
    bundlesServed.inc({ one_time: oneTimePreKey ? 'with' : 'without' });
    return {
      user,
      device,
      identityKey: row.get('identity_key') as Buffer,
      signedPreKey: {
        keyId: numOr(row.get('spk_id'), 0),
        publicKey: row.get('spk_public') as Buffer,
        signature: row.get('spk_signature') as Buffer,
      },
      oneTimePreKey,
      remaining: await this.count(aux, user, device),
    };
  }

  /**
   * Claims one one-time prekey of the device (see the class comment); null when it has none.
   *
   * Claims of one device from this instance run one at a time: every LWT on a partition goes through
   * the same Paxos instance, and N local claims racing there cost contention retries instead of a
   * queue. Measured on Cassandra 5 (one node, 4 instances x 75 concurrent fetches of one device's
   * 100 keys, medians of 3): 70 fetches/s all racing, 393 fetches/s with this queue. Claims from
   * other instances (nodes, shards) still race, and the losers move on to another key.
   */
  private claim(aux: AuxClient, user: string, device: string): Promise<OneTimePreKey | null> {
    const key = `${user}\u0000${device}`;
    const run = (this.claiming.get(key) ?? Promise.resolve()).then(() => this.claimNow(aux, user, device));
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.claiming.set(key, tail);
    void tail.then(() => {
      if (this.claiming.get(key) === tail) this.claiming.delete(key);
    });
    return run;
  }

  private async claimNow(aux: AuxClient, user: string, device: string): Promise<OneTimePreKey | null> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const rows = await aux.read(this.q.selectOneTime, [user, device, CANDIDATES]);
      if (rows.length === 0) return null;
      const candidates = rows.map((r) => ({ keyId: numOr(r.get('key_id'), 0), publicKey: r.get('public_key') as Buffer }));
      // Fisher-Yates: concurrent fetches spread over the candidates instead of all racing for the first.
      for (let i = candidates.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
      }
      for (const c of candidates) {
        let applied: boolean;
        try {
          applied = (await aux.lwt(this.q.claimOneTime, [user, device, c.keyId, c.publicKey])).wasApplied();
        } catch (err) {
          // Unknown outcome: the key may be gone. It is never handed out (lost rather than given
          // twice); the fetch moves on to another one.
          if (err instanceof StoreError && err.code === 'store.timeout') {
            claimConflicts.inc();
            continue;
          }
          throw err;
        }
        if (applied) return c;
        claimConflicts.inc();
      }
    }
    throw new KeyError('keys.contended', `could not claim a one-time prekey of ${user}/${device} after ${MAX_ROUNDS} rounds of concurrent fetches; retry`);
  }

  private async insertOneTime(aux: AuxClient, user: string, device: string, keys: OneTimePreKey[]): Promise<void> {
    let pending = keys;
    // A conditional batch applies all or nothing: when some keyIds already exist (a retried upload,
    // or a concurrent one), drop those and apply the rest.
    while (pending.length > 0) {
      const rs = await aux.batch(pending.map((k) => ({ query: this.q.insertOneTime, params: [user, device, k.keyId, Buffer.from(k.publicKey)] })));
      if (rs.wasApplied()) return;
      const existing = new Set(rs.rows.filter((r) => r.get('key_id') !== null && r.get('key_id') !== undefined).map((r) => numOr(r.get('key_id'), 0)));
      const next = pending.filter((k) => !existing.has(k.keyId));
      if (next.length === pending.length) throw new StoreError('store.internal', 'conditional prekey batch was not applied and named no existing key');
      pending = next;
    }
  }

  /** Claims every remaining key (LWT deletes, like fetches), so the table never mixes write kinds. */
  private async deleteAllOneTime(aux: AuxClient, user: string, device: string): Promise<void> {
    for (const r of await aux.read(this.q.selectKeyIds, [user, device])) {
      await aux.lwt(this.q.deleteOneTime, [user, device, r.get('key_id')]);
    }
  }

  private async count(aux: AuxClient, user: string, device: string): Promise<number> {
    const row = (await aux.read(this.q.countOneTime, [user, device]))[0];
    return numOr(row?.get('n'), 0);
  }

  /** The open client, once its tables exist (created on first use: src/store/scylla/aux-tables.ts). */
  private async client(): Promise<AuxClient> {
    if (!this.aux) throw new StoreError('store.unavailable', 'key store is not open');
    await this.aux.ready();
    return this.aux;
  }
}

function statements(ks: string) {
  return {
    selectDevice: `SELECT device_id, identity_key, spk_id, spk_public, spk_signature FROM ${ks}.prekey_devices WHERE user_id = ? AND device_id = ?`,
    selectDevices: `SELECT device_id, identity_key, spk_id, spk_public, spk_signature FROM ${ks}.prekey_devices WHERE user_id = ?`,
    upsertDevice: `INSERT INTO ${ks}.prekey_devices (user_id, device_id, identity_key, spk_id, spk_public, spk_signature, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    deleteDevice: `DELETE FROM ${ks}.prekey_devices WHERE user_id = ? AND device_id = ?`,
    selectKeyIds: `SELECT key_id FROM ${ks}.prekey_onetime WHERE user_id = ? AND device_id = ?`,
    selectOneTime: `SELECT key_id, public_key FROM ${ks}.prekey_onetime WHERE user_id = ? AND device_id = ? LIMIT ?`,
    countOneTime: `SELECT COUNT(*) AS n FROM ${ks}.prekey_onetime WHERE user_id = ? AND device_id = ?`,
    insertOneTime: `INSERT INTO ${ks}.prekey_onetime (user_id, device_id, key_id, public_key) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
    claimOneTime: `DELETE FROM ${ks}.prekey_onetime WHERE user_id = ? AND device_id = ? AND key_id = ? IF public_key = ?`,
    deleteOneTime: `DELETE FROM ${ks}.prekey_onetime WHERE user_id = ? AND device_id = ? AND key_id = ? IF EXISTS`,
  };
}
