import { TicksError } from '../lib/errors.js';

export type BlobErrorCode = 'media.blob_unavailable' | 'media.blob_failed' | 'media.invalid';

/** Failures of a blob store; driver and file-system errors never escape src/media without this. */
export class BlobError extends TicksError {
  declare readonly code: BlobErrorCode;
  constructor(code: BlobErrorCode, message: string, cause?: unknown) {
    super(code, message, { retryable: code === 'media.blob_unavailable', cause });
    this.name = 'BlobError';
  }
}
