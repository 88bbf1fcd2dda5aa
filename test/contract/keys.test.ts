/**
 * Contract of the prekey directory (src/keys/key-store.ts), run against both implementations:
 * embedded (lmdb) always, scylla on the test Cassandra (a missing Cassandra fails the suite).
 * Includes the single-consumption race: many concurrent fetches from several instances (and, for
 * lmdb, several processes), every one-time prekey handed out exactly once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import t from 'tap';
import { EmbeddedKeyStore } from '../../src/keys/embedded-key-store.js';
import { KeyError, type DeviceKeysUpload, type KeyStore, type OneTimePreKey } from '../../src/keys/key-store.js';
import { ScyllaKeyStore } from '../../src/keys/scylla-key-store.js';
import { uniqueKeyspace } from '../support/env.js';
import { scyllaTestOptions } from './store-engines.js';

const LIMITS = { maxOneTimePreKeys: 300 };

interface Factory {
  name: 'embedded' | 'scylla';
  create(): KeyStore;
  /** Embedded only: the lmdb path, for the cross-thread race. */
  path?: string;
  cleanup(): void;
}

function factories(): Factory[] {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-keys-'));
  const path = join(dir, 'keys');
  const keyspace = uniqueKeyspace('keys');
  return [
    { name: 'embedded', path, create: () => new EmbeddedKeyStore(path, LIMITS), cleanup: () => rmSync(dir, { recursive: true, force: true }) },
    {
      name: 'scylla',
      create: () =>
        new ScyllaKeyStore(
          { ...scyllaTestOptions(keyspace), bucketSize: 1000 },
          LIMITS,
        ),
      cleanup: () => {},
    },
  ];
}

const bytes = (n = 32): Buffer => randomBytes(n);
const oneTime = (from: number, count: number): OneTimePreKey[] => Array.from({ length: count }, (_, i) => ({ keyId: from + i, publicKey: bytes() }));
function upload(identityKey: Buffer, keys: OneTimePreKey[], spkId = 1): DeviceKeysUpload {
  return { identityKey, signedPreKey: { keyId: spkId, publicKey: bytes(), signature: bytes(64) }, oneTimePreKeys: keys };
}
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
let userSeq = 0;
const newUser = (): string => `u${Date.now().toString(36)}${++userSeq}`;

for (const f of factories()) {
  t.test(`prekey directory: ${f.name}`, async (t) => {
    const store = f.create();
    await store.open();
    t.teardown(async () => {
      await store.close();
      f.cleanup();
    });

    t.test('publish then fetch returns the published keys and consumes one one-time prekey', async (t) => {
      const user = newUser();
      const ik = bytes();
      const keys = oneTime(1, 3);
      const up = upload(ik, keys, 7);
      const r = await store.publish(user, 'd1', up, 1000);
      t.same(r, { oneTimeCount: 3, identityChanged: false });
      const b = await store.fetchBundle(user, 'd1');
      t.ok(b);
      t.equal(hex(b!.identityKey), hex(ik));
      t.equal(b!.signedPreKey.keyId, 7);
      t.equal(hex(b!.signedPreKey.signature), hex(up.signedPreKey.signature));
      t.ok(b!.oneTimePreKey);
      const original = keys.find((k) => k.keyId === b!.oneTimePreKey!.keyId);
      t.ok(original, 'the one-time key is one that was published');
      t.equal(hex(b!.oneTimePreKey!.publicKey), hex(original!.publicKey));
      t.equal(b!.remaining, 2);
      t.equal(await store.countOneTime(user, 'd1'), 2);
    });

    t.test('a device that ran out gets a bundle without a one-time prekey', async (t) => {
      const user = newUser();
      await store.publish(user, 'd1', upload(bytes(), oneTime(1, 1)), 1);
      t.ok((await store.fetchBundle(user, 'd1'))!.oneTimePreKey);
      const b = await store.fetchBundle(user, 'd1');
      t.ok(b);
      t.equal(b!.oneTimePreKey, null);
      t.equal(b!.remaining, 0);
    });

    t.test('unknown devices and users give null and an empty list', async (t) => {
      t.equal(await store.fetchBundle(newUser(), 'nope'), null);
      t.same(await store.fetchBundles(newUser()), []);
      t.equal(await store.countOneTime(newUser(), 'nope'), 0);
    });

    t.test('fetchBundles returns every device of the user, each consuming its own key', async (t) => {
      const user = newUser();
      await store.publish(user, 'a', upload(bytes(), oneTime(1, 2)), 1);
      await store.publish(user, 'b', upload(bytes(), oneTime(1, 2)), 1);
      await store.publish(newUser(), 'a', upload(bytes(), oneTime(1, 2)), 1); // another user
      const bundles = await store.fetchBundles(user);
      t.same(bundles.map((b) => b.device).sort(), ['a', 'b']);
      t.ok(bundles.every((b) => b.oneTimePreKey !== null && b.remaining === 1));
    });

    t.test('a re-upload adds new keys and keeps the stored bytes of a repeated keyId', async (t) => {
      const user = newUser();
      const ik = bytes();
      const first = oneTime(1, 2);
      await store.publish(user, 'd', upload(ik, first), 1);
      const again = [{ keyId: 1, publicKey: bytes() }, ...oneTime(3, 2)];
      const r = await store.publish(user, 'd', upload(ik, again, 2), 2);
      t.same(r, { oneTimeCount: 4, identityChanged: false });
      const seen = new Map<number, string>();
      for (let i = 0; i < 4; i++) {
        const b = await store.fetchBundle(user, 'd');
        seen.set(b!.oneTimePreKey!.keyId, hex(b!.oneTimePreKey!.publicKey));
        t.equal(b!.signedPreKey.keyId, 2, 'the signed prekey was replaced');
      }
      t.same([...seen.keys()].sort(), [1, 2, 3, 4]);
      t.equal(seen.get(1), hex(first[0]!.publicKey), 'keyId 1 kept its first bytes');
    });

    t.test('a new identity key drops the old identity\'s one-time prekeys', async (t) => {
      const user = newUser();
      await store.publish(user, 'd', upload(bytes(), oneTime(1, 5)), 1);
      const fresh = oneTime(100, 2);
      const r = await store.publish(user, 'd', upload(bytes(), fresh), 2);
      t.same(r, { oneTimeCount: 2, identityChanged: true });
      const ids = [(await store.fetchBundle(user, 'd'))!.oneTimePreKey!.keyId, (await store.fetchBundle(user, 'd'))!.oneTimePreKey!.keyId];
      t.same(ids.sort(), [100, 101]);
    });

    t.test('exceeding maxOneTimePreKeys is keys.too_many and writes nothing', async (t) => {
      const user = newUser();
      const ik = bytes();
      await store.publish(user, 'd', upload(ik, oneTime(1, 250)), 1);
      const err = await store.publish(user, 'd', upload(ik, oneTime(1000, 51), 9), 2).then(() => null, (e: unknown) => e);
      t.ok(err instanceof KeyError && err.code === 'keys.too_many', 'rejected with keys.too_many');
      t.equal(await store.countOneTime(user, 'd'), 250);
      t.equal((await store.fetchBundle(user, 'd'))!.signedPreKey.keyId, 1, 'the signed prekey is unchanged');
    });

    t.test('removeDevice forgets the device', async (t) => {
      const user = newUser();
      await store.publish(user, 'd', upload(bytes(), oneTime(1, 3)), 1);
      await store.removeDevice(user, 'd');
      t.equal(await store.fetchBundle(user, 'd'), null);
      t.equal(await store.countOneTime(user, 'd'), 0);
    });

    t.test('a fresh instance reads what another wrote', async (t) => {
      const user = newUser();
      await store.publish(user, 'd', upload(bytes(), oneTime(1, 2)), 1);
      const other = f.create();
      await other.open();
      t.teardown(() => other.close());
      t.equal(await other.countOneTime(user, 'd'), 2);
    });

    t.test('single consumption: concurrent fetches from several instances hand out each one-time prekey once', async (t) => {
      const user = newUser();
      const KEYS = 60;
      const FETCHES = 150;
      const published = oneTime(1, KEYS);
      await store.publish(user, 'd', upload(bytes(), published), 1);
      const instances = [store, f.create(), f.create()];
      await Promise.all(instances.slice(1).map((s) => s.open()));
      t.teardown(() => Promise.all(instances.slice(1).map((s) => s.close())));
      const results = await Promise.all(Array.from({ length: FETCHES }, (_, i) => instances[i % instances.length]!.fetchBundle(user, 'd')));
      const handed = results.map((b) => b!.oneTimePreKey).filter((k): k is OneTimePreKey => k !== null);
      const ids = handed.map((k) => k.keyId);
      t.equal(new Set(ids).size, ids.length, 'no one-time prekey was handed out twice');
      t.equal(ids.length, KEYS, 'every one-time prekey was handed out (more fetches than keys)');
      const byId = new Map(published.map((k) => [k.keyId, hex(k.publicKey)]));
      t.ok(handed.every((k) => byId.get(k.keyId) === hex(k.publicKey)), 'each handed-out key carries its published bytes');
      t.equal(results.filter((b) => b!.oneTimePreKey === null).length, FETCHES - KEYS);
      t.equal(await store.countOneTime(user, 'd'), 0);
    });

    if (f.path) {
      const path = f.path;
      t.test('single consumption across processes (lmdb write lock)', async (t) => {
        const user = newUser();
        const KEYS = 80;
        await store.publish(user, 'd', upload(bytes(), oneTime(1, KEYS)), 1);
        const moduleUrl = new URL('../../src/keys/embedded-key-store.ts', import.meta.url).href;
        const code = `
          const { EmbeddedKeyStore } = await import(${JSON.stringify(moduleUrl)});
          const s = new EmbeddedKeyStore(${JSON.stringify(path)}, { maxOneTimePreKeys: 1000 });
          await s.open();
          const got = await Promise.all(Array.from({ length: 40 }, () => s.fetchBundle(${JSON.stringify(user)}, 'd')));
          await s.close();
          process.stdout.write(JSON.stringify(got.map((b) => (b.oneTimePreKey ? b.oneTimePreKey.keyId : null))));`;
        const runWorker = (): Promise<(number | null)[]> =>
          new Promise((resolve, reject) => {
            execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], (err, stdout) => {
              if (err) reject(err);
              else resolve(JSON.parse(stdout) as (number | null)[]);
            });
          });
        const local = Promise.all(Array.from({ length: 40 }, () => store.fetchBundle(user, 'd').then((b) => b!.oneTimePreKey?.keyId ?? null)));
        const all = (await Promise.all([runWorker(), runWorker(), runWorker(), local])).flat();
        const ids = all.filter((x): x is number => x !== null);
        t.equal(new Set(ids).size, ids.length, 'no key handed out twice across processes');
        t.equal(ids.length, KEYS, 'all keys handed out');
      });
    }
  });
}
