import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../lib/log.js';
import type { Store } from '../store/store.js';
import { scyllaOptionsOf } from '../store/scylla/aux-tables.js';
import type { BlobStore } from './blob-store.js';
import { DiskBlobStore } from './disk-blob-store.js';
import { EmbeddedMediaIndex } from './embedded-media-index.js';
import { createHasher, type Hasher } from './hasher.js';
import { mountMedia } from './http.js';
import type { MediaIndex } from './media-index.js';
import { S3BlobStore } from './s3-blob-store.js';
import { ScyllaMediaIndex } from './scylla-media-index.js';
import { urlSecretFrom } from './signing.js';
import { typePolicy } from './sniff.js';

/**
 * The media subsystem of one shard thread, built from config: blob store (disk or s3), media index
 * (on the store's engine: lmdb in `<media root>/index`, or tables in the scylla keyspace), hashing
 * pool and the HTTP routes. `<media root>` is media.diskPath, default `<dataDir>/media`.
 */
export interface Media {
  readonly blobs: BlobStore;
  readonly index: MediaIndex;
  open(): Promise<void>;
  close(): Promise<void>;
  mount(app: TemplatedApp, deps: { store: Pick<Store, 'getMember'>; verify: TokenVerifier; log: Logger }): void;
}

export function createMedia(cfg: Pick<Config, 'media' | 'store' | 'dataDir'>, hs256Secret: string | undefined): Media {
  const m = cfg.media;
  const root = m.diskPath ?? join(cfg.dataDir, 'media');
  const disk = m.blobStore === 'disk' ? new DiskBlobStore(root) : null;
  const blobs: BlobStore =
    disk ??
    new S3BlobStore({
      endpoint: m.s3.endpoint,
      region: m.s3.region,
      bucket: m.s3.bucket,
      prefix: m.s3.prefix,
      accessKeyId: m.s3.accessKeyId,
      secretAccessKey: m.s3.secretAccessKey,
      forcePathStyle: m.s3.forcePathStyle,
      createBucket: m.s3.createBucket,
    });
  const index: MediaIndex = cfg.store.engine === 'scylla' ? new ScyllaMediaIndex(scyllaOptionsOf(cfg.store)) : new EmbeddedMediaIndex(join(root, 'index'));
  const spoolDir = disk ? disk.tmpDir : join(root, 'tmp');
  const hasher: Hasher = createHasher(m.hashThreads);
  return {
    blobs,
    index,
    async open() {
      await mkdir(spoolDir, { recursive: true });
      await blobs.open();
      await index.open();
    },
    async close() {
      await Promise.allSettled([hasher.close(), blobs.close(), index.close()]);
    },
    mount(app, deps) {
      mountMedia(app, {
        blobs,
        index,
        store: deps.store,
        verify: deps.verify,
        hasher,
        policy: typePolicy(m),
        spoolDir,
        inlineMaxBytes: m.hashInlineMaxBytes,
        maxConcurrentUploads: m.maxConcurrentUploads,
        urlSecret: urlSecretFrom(m.urlSecret, hs256Secret),
        urlTtlS: m.urlTtlS,
        log: deps.log,
      });
    },
  };
}
