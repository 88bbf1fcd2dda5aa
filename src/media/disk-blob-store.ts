import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isMediaId, type BlobRead, type BlobSource, type BlobStore } from './blob-store.js';
import { BlobError } from './errors.js';
import { measureBlob } from './metrics.js';

/**
 * Blobs on local disk (embedded mode): `<root>/blobs/<id[0..2]>/<id[2..4]>/<id>`, two levels of
 * fan-out so no directory grows past 65,536 entries per level.
 *
 * Atomic write: bytes go to a temp file in `<root>/tmp` (same file system), which is fsynced and then
 * renamed into place, then the directory is fsynced; a crash leaves either no blob or the whole
 * blob, never a partial one under its id. Temp files left by a crash (older than an hour: shards of
 * a running node share the folder and may be mid-upload) are removed at open.
 */
const STALE_TMP_MS = 3600_000;

export class DiskBlobStore implements BlobStore {
  readonly kind = 'disk' as const;

  constructor(readonly root: string) {}

  /** Where the upload path spools large bodies: on the same file system, so `put` is a rename. */
  get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  async open(): Promise<void> {
    try {
      await mkdir(this.tmpDir, { recursive: true });
      const cutoff = Date.now() - STALE_TMP_MS;
      for (const name of await readdir(this.tmpDir)) {
        const path = join(this.tmpDir, name);
        const st = await stat(path).catch(() => null);
        if (st && st.mtimeMs < cutoff) await rm(path, { force: true });
      }
      await mkdir(join(this.root, 'blobs'), { recursive: true });
    } catch (err) {
      throw new BlobError('media.blob_failed', `cannot prepare the blob directory ${this.root}: ${(err as Error).message}`, err);
    }
  }

  async close(): Promise<void> {}

  put(id: string, source: BlobSource): Promise<{ created: boolean }> {
    return measureBlob('disk', 'put', async () => {
      const target = this.pathOf(id);
      if (await exists(target)) {
        if (source.kind === 'file') await unlink(source.path).catch(() => undefined);
        return { created: false };
      }
      await mkdir(dirname(target), { recursive: true });
      const tmp = join(this.tmpDir, `${id}.${randomBytes(6).toString('hex')}`);
      try {
        if (source.kind === 'buffer') {
          const fh = await open(tmp, 'wx', 0o640);
          try {
            await fh.writeFile(source.bytes);
            await fh.sync();
          } finally {
            await fh.close();
          }
        } else {
          await moveFile(source.path, tmp);
          const fh = await open(tmp, 'r');
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
        }
        // rename over an existing target is atomic and harmless (same id, same bytes).
        await rename(tmp, target);
        await syncDir(dirname(target));
        return { created: true };
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw new BlobError('media.blob_failed', `cannot store blob ${id}: ${(err as Error).message}`, err);
      }
    });
  }

  get(id: string): Promise<BlobRead | null> {
    return measureBlob('disk', 'get', async () => {
      const path = this.pathOf(id);
      try {
        // Open first, then stat the open file: a concurrent delete cannot split the two.
        const fh = await open(path, 'r');
        const { size } = await fh.stat();
        return { size, stream: fh.createReadStream() };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new BlobError('media.blob_failed', `cannot read blob ${id}: ${(err as Error).message}`, err);
      }
    });
  }

  has(id: string): Promise<boolean> {
    return measureBlob('disk', 'head', () => exists(this.pathOf(id)));
  }

  delete(id: string): Promise<void> {
    return measureBlob('disk', 'delete', () => rm(this.pathOf(id), { force: true }));
  }

  private pathOf(id: string): string {
    if (!isMediaId(id)) throw new BlobError('media.invalid', `not a media id: ${JSON.stringify(id).slice(0, 80)}`);
    return join(this.root, 'blobs', id.slice(0, 2), id.slice(2, 4), id);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** rename, or copy + unlink when the source is on another file system. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
    await unlink(from);
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
