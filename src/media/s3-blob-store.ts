import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { isMediaId, type BlobRead, type BlobSource, type BlobStore } from './blob-store.js';
import { BlobError } from './errors.js';
import { measureBlob } from './metrics.js';

/**
 * Blobs in an S3-compatible bucket (cluster mode: every node reads what any node wrote), through
 * `@aws-sdk/client-s3`. Tested against s3proxy (test/support/services/s3.ts).
 *
 * Key layout: `<prefix><id>`. A PutObject is atomic for readers (an object is visible whole or not
 * at all), so no temp key is needed; `put` skips the upload when HeadObject finds the id (content
 * addressed: same id, same bytes).
 *
 * The SDK's default CRC trailers (aws-chunked uploads) are switched to "when required": several
 * S3-compatible servers reject them, and integrity is already the SHA-256 id.
 */
export interface S3BlobStoreOptions {
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  prefix: string;
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  forcePathStyle: boolean;
  createBucket: boolean;
  requestTimeoutMs?: number;
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  private client: S3Client | null = null;

  constructor(private readonly o: S3BlobStoreOptions) {}

  open(): Promise<void> {
    return measureBlob('s3', 'open', async () => {
      if (this.client) return;
      const client = new S3Client({
        region: this.o.region,
        forcePathStyle: this.o.forcePathStyle,
        ...(this.o.endpoint ? { endpoint: this.o.endpoint } : {}),
        ...(this.o.accessKeyId && this.o.secretAccessKey
          ? { credentials: { accessKeyId: this.o.accessKeyId, secretAccessKey: this.o.secretAccessKey } }
          : {}),
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: 3,
      });
      try {
        await client.send(new HeadBucketCommand({ Bucket: this.o.bucket }));
      } catch (err) {
        if (!(this.o.createBucket && statusOf(err) === 404)) {
          client.destroy();
          throw wrap(err, `bucket ${this.o.bucket} is not reachable`);
        }
        try {
          await client.send(new CreateBucketCommand({ Bucket: this.o.bucket }));
        } catch (e) {
          // Another node created it meanwhile.
          if (!(e instanceof S3ServiceException && (e.name === 'BucketAlreadyOwnedByYou' || e.name === 'BucketAlreadyExists'))) {
            client.destroy();
            throw wrap(e, `cannot create bucket ${this.o.bucket}`);
          }
        }
      }
      this.client = client;
    });
  }

  async close(): Promise<void> {
    this.client?.destroy();
    this.client = null;
  }

  put(id: string, source: BlobSource): Promise<{ created: boolean }> {
    return measureBlob('s3', 'put', async () => {
      const key = this.keyOf(id);
      try {
        if (await this.exists(key)) return { created: false };
        const body = source.kind === 'buffer' ? source.bytes : createReadStream(source.path);
        const length = source.kind === 'buffer' ? source.bytes.length : source.size;
        await this.s3().send(new PutObjectCommand({ Bucket: this.o.bucket, Key: key, Body: body, ContentLength: length }));
        return { created: true };
      } catch (err) {
        throw wrap(err, `cannot store blob ${id}`);
      } finally {
        if (source.kind === 'file') await unlink(source.path).catch(() => undefined);
      }
    });
  }

  get(id: string): Promise<BlobRead | null> {
    return measureBlob('s3', 'get', async () => {
      try {
        const out = await this.s3().send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.keyOf(id) }));
        if (!(out.Body instanceof Readable)) throw new BlobError('media.blob_failed', 'S3 GetObject returned no stream body');
        return { size: out.ContentLength ?? 0, stream: out.Body };
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw wrap(err, `cannot read blob ${id}`);
      }
    });
  }

  has(id: string): Promise<boolean> {
    return measureBlob('s3', 'head', async () => {
      try {
        return await this.exists(this.keyOf(id));
      } catch (err) {
        throw wrap(err, `cannot check blob ${id}`);
      }
    });
  }

  delete(id: string): Promise<void> {
    return measureBlob('s3', 'delete', async () => {
      try {
        await this.s3().send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: this.keyOf(id) }));
      } catch (err) {
        if (statusOf(err) !== 404) throw wrap(err, `cannot delete blob ${id}`);
      }
    });
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.s3().send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: key }));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  private keyOf(id: string): string {
    if (!isMediaId(id)) throw new BlobError('media.invalid', `not a media id: ${JSON.stringify(id).slice(0, 80)}`);
    return this.o.prefix + id;
  }

  private s3(): S3Client {
    if (!this.client) throw new BlobError('media.blob_unavailable', 'S3 blob store is not open');
    return this.client;
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** By status and class only: 5xx, throttling and network failures are retryable, the rest is not. */
function wrap(err: unknown, what: string): BlobError {
  if (err instanceof BlobError) return err;
  const status = statusOf(err);
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  if (status === undefined || status >= 500 || status === 429) return new BlobError('media.blob_unavailable', `${what}: ${detail}`, err);
  return new BlobError('media.blob_failed', `${what} (HTTP ${status}): ${detail}`, err);
}
