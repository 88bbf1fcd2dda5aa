import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobSource } from './blob-store.js';
import type { Hasher } from './hasher.js';
import { categoryOf, detectType, SNIFF_BYTES, type TypePolicy } from './sniff.js';

/**
 * One upload's body as it streams in, independent of the HTTP server:
 *
 * - Size is checked on every chunk, against the limit of the detected type (or, before detection,
 *   the largest limit of any type): the first byte over it fails the upload with 413 at once, so an
 *   oversize body is never buffered or spooled in full. A declared Content-Length over the limit
 *   fails before any body is read.
 * - The type is detected from the first SNIFF_BYTES bytes (or the whole body if smaller) with
 *   file-type; a type outside media.allowedTypes, or none, fails with 415 as soon as it is known.
 * - Bodies up to `inlineMaxBytes` stay in memory and are hashed inline; larger ones are spooled to a
 *   temp file (the producer is asked to pause while the file write is behind) and hashed on the
 *   piscina pool (src/media/hasher.ts).
 *
 * Failures are UploadFailure values with the HTTP status and a stable code; `onFailure` is called
 * once, whether the failure came from a chunk or from the asynchronous type detection.
 */
export interface UploadOptions {
  policy: TypePolicy;
  hasher: Hasher;
  spoolDir: string;
  inlineMaxBytes: number;
  declaredLength?: number | undefined;
  onFailure: (f: UploadFailure) => void;
}

export class UploadFailure {
  constructor(
    readonly status: 400 | 413 | 415 | 500 | 503,
    readonly code: 'media.too_large' | 'media.unsupported_type' | 'media.empty' | 'media.spool_failed' | 'media.busy',
    readonly message: string,
  ) {}
}

export interface UploadResult {
  id: string;
  type: string;
  size: number;
  source: BlobSource;
}

export class Upload {
  size = 0;
  failure: UploadFailure | null = null;
  private type: string | undefined;
  private limit: number;
  private head: Buffer[] = [];
  private headBytes = 0;
  private detection: Promise<void> | null = null;
  private chunks: Buffer[] = [];
  private file: WriteStream | null = null;
  private filePath: string | null = null;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly o: UploadOptions) {
    this.limit = o.policy.maxAny;
    if (o.declaredLength !== undefined && o.declaredLength > this.limit) {
      this.fail(new UploadFailure(413, 'media.too_large', `declared Content-Length ${o.declaredLength} is over the largest allowed upload (${this.limit} bytes)`));
    }
  }

  /** Adds a chunk (owned by the upload from now on). Returns true when the producer should pause until `drained()`. */
  push(chunk: Buffer): boolean {
    if (this.failure) return false;
    this.size += chunk.length;
    if (this.size > this.limit) {
      this.fail(new UploadFailure(413, 'media.too_large', this.tooLarge()));
      return false;
    }
    if (this.headBytes < SNIFF_BYTES) {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      if (this.headBytes >= SNIFF_BYTES) this.detect();
    }
    if (this.file === null && this.size > this.o.inlineMaxBytes) this.startSpool();
    if (this.file) {
      const ok = this.file.write(chunk);
      return !ok;
    }
    this.chunks.push(chunk);
    return false;
  }

  /** Resolves when the spool file has caught up (after `push` returned true). */
  drained(): Promise<void> {
    if (!this.file || !this.file.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** The body is complete: detect (if not yet), hash, and hand back the blob source. */
  async finish(): Promise<UploadResult> {
    if (this.size === 0) this.fail(new UploadFailure(400, 'media.empty', 'empty upload body'));
    if (!this.failure) this.detect();
    await this.detection;
    if (this.failure) throw this.failure;
    const type = this.type!;
    if (this.file) {
      const file = this.file;
      await new Promise<void>((resolve, reject) => {
        file.once('error', reject);
        file.end(() => resolve());
      });
      let id: string;
      try {
        id = await this.o.hasher.hashFile(this.filePath!);
      } catch (err) {
        this.discard();
        throw new UploadFailure(503, 'media.busy', `hashing pool refused the upload: ${(err as Error).message}`);
      }
      const path = this.filePath!;
      this.file = null;
      this.filePath = null; // handed to the blob store, which moves or deletes it
      return { id, type, size: this.size, source: { kind: 'file', path, size: this.size } };
    }
    const bytes = Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    return { id: this.o.hasher.hashBuffer(bytes), type, size: this.size, source: { kind: 'buffer', bytes } };
  }

  /** Drops everything held (failure, abort). Idempotent. */
  discard(): void {
    this.chunks = [];
    this.head = [];
    const file = this.file;
    const path = this.filePath;
    this.file = null;
    this.filePath = null;
    if (file) file.destroy();
    if (path) void unlink(path).catch(() => undefined);
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private detect(): void {
    if (this.detection) return;
    const head = Buffer.concat(this.head);
    this.head = [];
    this.detection = detectType(head).then(
      (mime) => {
        if (this.failure) return;
        if (mime === undefined || !this.o.policy.allowed.has(mime)) {
          this.fail(
            new UploadFailure(
              415,
              'media.unsupported_type',
              mime === undefined ? 'content type could not be recognised from its bytes' : `content type ${mime} is not allowed`,
            ),
          );
          return;
        }
        this.type = mime;
        this.limit = this.o.policy.maxBytes[categoryOf(mime)];
        if (this.size > this.limit || (this.o.declaredLength !== undefined && this.o.declaredLength > this.limit)) {
          this.fail(new UploadFailure(413, 'media.too_large', this.tooLarge()));
        }
      },
      (err: unknown) => this.fail(new UploadFailure(415, 'media.unsupported_type', `type detection failed: ${(err as Error).message}`)),
    );
  }

  private startSpool(): void {
    this.filePath = join(this.o.spoolDir, `upload-${randomBytes(8).toString('hex')}`);
    this.file = createWriteStream(this.filePath, { flags: 'wx', mode: 0o640 });
    this.file.on('drain', () => {
      for (const w of this.drainWaiters.splice(0)) w();
    });
    this.file.on('error', (err) => this.fail(new UploadFailure(500, 'media.spool_failed', `cannot spool the upload: ${err.message}`)));
    for (const c of this.chunks) this.file.write(c);
    this.chunks = [];
  }

  private tooLarge(): string {
    const what = this.type ? `${this.type} uploads` : 'uploads';
    return `${what} are limited to ${this.limit} bytes`;
  }

  private fail(f: UploadFailure): void {
    if (this.failure) return;
    this.failure = f;
    this.discard();
    this.o.onFailure(f);
  }
}
