/**
 * Contracts of media storage, each run against every implementation:
 * - BlobStore (src/media/blob-store.ts): disk always, S3 against a real s3proxy started here
 *   (test/support/services/s3.ts; it needs Java 17 and fetches the jar once).
 * - MediaIndex (src/media/media-index.ts): embedded lmdb always, scylla on the test Cassandra.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import t from 'tap';
import type { BlobStore } from '../../src/media/blob-store.js';
import { DiskBlobStore } from '../../src/media/disk-blob-store.js';
import { EmbeddedMediaIndex } from '../../src/media/embedded-media-index.js';
import { BlobError } from '../../src/media/errors.js';
import type { MediaIndex } from '../../src/media/media-index.js';
import { S3BlobStore } from '../../src/media/s3-blob-store.js';
import { ScyllaMediaIndex } from '../../src/media/scylla-media-index.js';
import { uniqueKeyspace } from '../support/env.js';
import { scyllaTestOptions } from './store-engines.js';
import { startS3, type S3Service } from '../support/services/s3.js';

const dir = mkdtempSync(join(tmpdir(), 'ticks-blobs-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

interface BlobFactory {
  name: string;
  create(): BlobStore;
}

let s3: S3Service | undefined;
const bucket = `ticks-test-${randomBytes(4).toString('hex')}`;
const s3Store = (over: { secretAccessKey?: string; createBucket?: boolean } = {}): S3BlobStore =>
  new S3BlobStore({
    endpoint: s3!.endpoint,
    region: s3!.region,
    bucket,
    prefix: 'media/',
    accessKeyId: s3!.accessKeyId,
    secretAccessKey: over.secretAccessKey ?? s3!.secretAccessKey,
    forcePathStyle: true,
    createBucket: over.createBucket ?? true,
  });

const blobFactories: BlobFactory[] = [
  { name: 'disk', create: () => new DiskBlobStore(join(dir, 'disk')) },
  { name: 's3', create: () => s3Store() },
];

t.before(async () => {
  s3 = await startS3();
});
t.teardown(async () => {
  await s3?.stop();
});

for (const f of blobFactories) {
  t.test(`blob store: ${f.name}`, async (t) => {
    const store = f.create();
    await store.open();
    t.teardown(() => store.close());

    t.test('put then get returns the same bytes; a second put is a no-op', async (t) => {
      const bytes = randomBytes(100_000);
      const id = sha(bytes);
      t.same(await store.put(id, { kind: 'buffer', bytes }), { created: true });
      const got = await store.get(id);
      t.ok(got);
      t.equal(got!.size, bytes.length);
      t.ok((await readAll(got!.stream)).equals(bytes), 'bytes round-trip');
      t.same(await store.put(id, { kind: 'buffer', bytes }), { created: false });
      t.equal(await store.has(id), true);
    });

    t.test('a file source is stored and consumed', async (t) => {
      const bytes = randomBytes(2 * 1024 * 1024 + 7);
      const id = sha(bytes);
      const path = join(dir, `spool-${f.name}`);
      writeFileSync(path, bytes);
      t.same(await store.put(id, { kind: 'file', path, size: bytes.length }), { created: true });
      t.equal(existsSync(path), false, 'the spool file was moved or deleted');
      t.ok((await readAll((await store.get(id))!.stream)).equals(bytes));
    });

    t.test('unknown ids read as null; delete is idempotent', async (t) => {
      const id = sha(randomBytes(8));
      t.equal(await store.get(id), null);
      t.equal(await store.has(id), false);
      const bytes = randomBytes(10);
      const stored = sha(bytes);
      await store.put(stored, { kind: 'buffer', bytes });
      await store.delete(stored);
      await store.delete(stored);
      t.equal(await store.get(stored), null);
    });

    t.test('an empty blob round-trips', async (t) => {
      const bytes = Buffer.alloc(0);
      const id = sha(bytes);
      await store.put(id, { kind: 'buffer', bytes });
      const got = await store.get(id);
      t.equal(got!.size, 0);
      t.equal((await readAll(got!.stream)).length, 0);
    });

    t.test('concurrent puts of one id leave one intact blob', async (t) => {
      const bytes = randomBytes(300_000);
      const id = sha(bytes);
      const results = await Promise.all(Array.from({ length: 6 }, () => store.put(id, { kind: 'buffer', bytes })));
      t.ok(results.some((r) => r.created), 'at least one put created it');
      t.ok((await readAll((await store.get(id))!.stream)).equals(bytes));
    });

    t.test('a fresh instance reads what another wrote', async (t) => {
      const bytes = randomBytes(1000);
      const id = sha(bytes);
      await store.put(id, { kind: 'buffer', bytes });
      const other = f.create();
      await other.open();
      t.teardown(() => other.close());
      t.ok((await readAll((await other.get(id))!.stream)).equals(bytes));
    });

    t.test('a malformed id is refused with media.invalid', async (t) => {
      const err = await store.get('../../etc/passwd').then(() => null, (e: unknown) => e);
      t.ok(err instanceof BlobError && err.code === 'media.invalid');
    });
  });
}

t.test('disk: no temp file is left behind after puts', async (t) => {
  const store = new DiskBlobStore(join(dir, 'disk-tmp'));
  await store.open();
  for (let i = 0; i < 5; i++) {
    const bytes = randomBytes(5000);
    await store.put(sha(bytes), { kind: 'buffer', bytes });
  }
  t.same(readdirSync(store.tmpDir), []);
});

t.test('s3: wrong credentials fail open with a non-retryable error naming the bucket', async (t) => {
  const store = s3Store({ secretAccessKey: 'wrong-secret-wrong-secret' });
  const err = await store.open().then(() => null, (e: unknown) => e);
  t.ok(err instanceof BlobError, 'a BlobError');
  t.equal((err as BlobError).code, 'media.blob_failed');
  t.match((err as BlobError).message, bucket);
});

t.test('s3: an unreachable endpoint is media.blob_unavailable (retryable)', async (t) => {
  const store = new S3BlobStore({ endpoint: 'http://127.0.0.1:1', region: 'us-east-1', bucket, prefix: '', accessKeyId: 'a', secretAccessKey: 'b', forcePathStyle: true, createBucket: false });
  const err = await store.open().then(() => null, (e: unknown) => e);
  t.ok(err instanceof BlobError && err.code === 'media.blob_unavailable' && err.retryable);
});

interface IndexFactory {
  name: string;
  create(): MediaIndex;
}

const keyspace = uniqueKeyspace('blobs');
const indexFactories: IndexFactory[] = [
  { name: 'embedded', create: () => new EmbeddedMediaIndex(join(dir, 'index')) },
  {
    name: 'scylla',
    create: () =>
      new ScyllaMediaIndex({ ...scyllaTestOptions(keyspace), bucketSize: 1000 }),
  },
];

for (const f of indexFactories) {
  t.test(`media index: ${f.name}`, async (t) => {
    const index = f.create();
    await index.open();
    t.teardown(() => index.close());
    const id = sha(randomBytes(16));
    const other = sha(randomBytes(16));

    t.test('metadata: the first record of an id wins', async (t) => {
      t.equal(await index.getMeta(id), null);
      await index.putMeta({ id, type: 'image/png', size: 10, uploader: 'alice', createdAtMs: 1000 });
      await index.putMeta({ id, type: 'image/jpeg', size: 11, uploader: 'bob', createdAtMs: 2000 });
      t.same(await index.getMeta(id), { id, type: 'image/png', size: 10, uploader: 'alice', createdAtMs: 1000 });
    });

    t.test('references: recorded per conversation, idempotent, visible to a fresh instance', async (t) => {
      const conv = `c-${randomBytes(4).toString('hex')}`;
      t.equal(await index.isSentIn(conv, id), false);
      await index.recordSent(conv, [id, other]);
      await index.recordSent(conv, [id]);
      await index.recordSent(conv, []);
      t.equal(await index.isSentIn(conv, id), true);
      t.equal(await index.isSentIn(conv, other), true);
      t.equal(await index.isSentIn(`${conv}x`, id), false, 'another conversation does not see it');
      const fresh = f.create();
      await fresh.open();
      t.teardown(() => fresh.close());
      t.equal(await fresh.isSentIn(conv, id), true);
    });
  });
}
