import { Counter, Histogram } from 'prom-client';
import { isTicksError } from '../lib/errors.js';
import { registry } from '../metrics/registry.js';
import { BlobError } from './errors.js';

export type UploadOutcome = 'created' | 'duplicate' | 'too_large' | 'unsupported_type' | 'empty' | 'unauthorized' | 'busy' | 'aborted' | 'error';
export type DownloadOutcome = 'ok' | 'bad_signature' | 'expired' | 'not_found' | 'aborted' | 'error';
export type UrlOutcome = 'issued' | 'unauthorized' | 'not_member' | 'not_sent' | 'not_found' | 'bad_request' | 'unavailable' | 'error';
export type MediaCategory = 'image' | 'video' | 'audio' | 'document';

export const uploads = new Counter({
  name: 'ticks_media_uploads_total',
  help: 'Media uploads by outcome (created, duplicate of a stored blob, or why it was refused).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const uploadBytes = new Histogram({
  name: 'ticks_media_upload_size_bytes',
  help: 'Size of accepted media uploads by category.',
  labelNames: ['category'] as const,
  buckets: [1024, 16 * 1024, 128 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024, 64 * 1024 * 1024, 256 * 1024 * 1024],
  registers: [registry],
});

export const downloads = new Counter({
  name: 'ticks_media_downloads_total',
  help: 'Signed media downloads by outcome.',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const downloadBytes = new Counter({
  name: 'ticks_media_download_bytes_total',
  help: 'Bytes of media sent to downloaders.',
  registers: [registry],
});

export const urls = new Counter({
  name: 'ticks_media_urls_total',
  help: 'Requests for a signed download URL by outcome.',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const hashDuration = new Histogram({
  name: 'ticks_media_hash_duration_seconds',
  help: 'SHA-256 of an upload, inline on the shard thread or on the piscina pool.',
  labelNames: ['where'] as const,
  buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  registers: [registry],
});

const blobOps = new Histogram({
  name: 'ticks_media_blob_op_duration_seconds',
  help: 'Blob store operations by store (disk, s3), operation and result (ok or the error code).',
  labelNames: ['store', 'op', 'result'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

/** Measures one blob operation; anything it throws leaves as a BlobError. */
export async function measureBlob<T>(store: 'disk' | 's3', op: 'put' | 'get' | 'head' | 'delete' | 'open', fn: () => Promise<T>): Promise<T> {
  const end = blobOps.startTimer({ store, op });
  try {
    const out = await fn();
    end({ result: 'ok' });
    return out;
  } catch (err) {
    const e = err instanceof BlobError ? err : new BlobError('media.blob_failed', `${store} ${op} failed: ${(err as Error).message}`, err);
    end({ result: isTicksError(e) ? e.code : 'internal' });
    throw e;
  }
}

export type SendCheckOutcome = 'ok' | 'unknown' | 'disabled' | 'error';

export const sendChecks = new Counter({
  name: 'ticks_media_send_checks_total',
  help: 'Sends carrying media ids checked by a conversation actor: ok, unknown (an id never uploaded: refused), disabled (media off: refused) or error (index unreachable: retryable refusal).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const refsRecorded = new Counter({
  name: 'ticks_media_refs_recorded_total',
  help: 'Conversation references recorded after a commit, by result (ok, error: the sends are answered with a retryable error).',
  labelNames: ['result'] as const,
  registers: [registry],
});
