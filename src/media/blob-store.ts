import type { Readable } from 'node:stream';

/**
 * Where media bytes live. Blobs are content-addressed: the id is the SHA-256 of the bytes (64
 * lower-case hex characters), computed by the upload path before `put`, so one id always names the
 * same bytes and storing it twice is a no-op.
 *
 * Contract (both implementations, checked by test/contract/blobs.test.ts):
 * - `put` resolves once the blob is durable and readable in full by `get` from any node sharing the
 *   store (disk: written to a temp file, fsynced, renamed into place; S3: PutObject answered). A
 *   reader never sees a partial blob. `created: false` when the id was already stored (nothing is
 *   rewritten). A `file` source is consumed: the store moves or deletes it.
 * - `get` returns the size and a stream of the bytes, or null when the id is not stored.
 * - `delete` is idempotent.
 * - Failures are BlobError (`media.blob_unavailable`, retryable; `media.blob_failed`, not).
 */
export interface BlobStore {
  readonly kind: 'disk' | 's3';
  open(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  put(id: string, source: BlobSource): Promise<{ created: boolean }>;
  get(id: string): Promise<BlobRead | null>;
  has(id: string): Promise<boolean>;
  delete(id: string): Promise<void>;
}

export type BlobSource = { kind: 'buffer'; bytes: Buffer } | { kind: 'file'; path: string; size: number };

export interface BlobRead {
  size: number;
  stream: Readable;
}

/** A media id: the SHA-256 of the content in lower-case hex. */
export const MEDIA_ID = /^[0-9a-f]{64}$/;

export function isMediaId(v: unknown): v is string {
  return typeof v === 'string' && MEDIA_ID.test(v);
}
