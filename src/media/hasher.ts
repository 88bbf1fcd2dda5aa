import { createHash } from 'node:crypto';
import { Piscina } from 'piscina';
import { hashDuration } from './metrics.js';

/**
 * SHA-256 of uploads. Small bodies (in memory) are hashed inline: a few hundred microseconds at
 * most, less than a thread hop. Large ones (spooled to a file) are hashed on a piscina pool, so a
 * 100 MB upload (about 0.3 s of SHA-256) never stalls the shard's sockets. The pool is created on
 * first use, its threads end when idle, and its queue is bounded: past it, `hashFile` rejects and the
 * upload is answered 503.
 */
export interface Hasher {
  hashBuffer(bytes: Buffer): string;
  hashFile(path: string): Promise<string>;
  close(): Promise<void>;
}

const MAX_QUEUE_PER_THREAD = 64;
const IDLE_TIMEOUT_MS = 30_000;

export function createHasher(threads: number): Hasher {
  let pool: Piscina | null = null;
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return {
    hashBuffer(bytes) {
      const end = hashDuration.startTimer({ where: 'inline' });
      const hex = createHash('sha256').update(bytes).digest('hex');
      end();
      return hex;
    },
    async hashFile(path) {
      pool ??= new Piscina({
        filename: new URL('./hash-task' + ext, import.meta.url).href,
        minThreads: 0,
        maxThreads: threads,
        idleTimeout: IDLE_TIMEOUT_MS,
        maxQueue: threads * MAX_QUEUE_PER_THREAD,
      });
      const end = hashDuration.startTimer({ where: 'pool' });
      try {
        return (await pool.run(path)) as string;
      } finally {
        end();
      }
    },
    async close() {
      const p = pool;
      pool = null;
      await p?.destroy();
    },
  };
}
