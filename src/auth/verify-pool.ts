import { Piscina } from 'piscina';
import type { AuthConfig } from '../config/schema.js';
import { loadPublicKeys, settingsOf, type VerifyOutcome } from './verify.js';

/**
 * The node's pool for public-key token verification (main thread). Shards post verify requests to
 * the main thread, which runs them here. The queue is bounded: when it is full, `verify` rejects and
 * the shard answers the upgrade as a server error rather than queueing without limit.
 */
export interface VerifyPool {
  verify(token: string): Promise<VerifyOutcome>;
  close(): Promise<void>;
}

/** Pending verifications beyond the threads' capacity; past this the pool refuses. */
const MAX_QUEUE_PER_THREAD = 1024;

export function createVerifyPool(auth: AuthConfig): VerifyPool {
  // Parse the keys here first, so a bad key stops the node at start with a clear message instead of
  // failing inside a pool thread.
  loadPublicKeys(auth.publicKeys, auth.algorithms);
  const pool = new Piscina({
    filename: new URL('./verify-task' + extname(import.meta.url), import.meta.url).href,
    minThreads: 1,
    maxThreads: auth.verifyThreads,
    maxQueue: auth.verifyThreads * MAX_QUEUE_PER_THREAD,
    workerData: { settings: settingsOf(auth), publicKeys: [...auth.publicKeys] },
  });
  return {
    verify: (token) => pool.run(token) as Promise<VerifyOutcome>,
    close: () => pool.destroy(),
  };
}

/** `.ts` when running from source through tsx, `.js` when running the build. */
function extname(url: string): string {
  return url.endsWith('.ts') ? '.ts' : '.js';
}
