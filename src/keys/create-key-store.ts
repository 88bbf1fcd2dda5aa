import { join } from 'node:path';
import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../lib/log.js';
import { scyllaOptionsOf } from '../store/scylla/aux-tables.js';
import { EmbeddedKeyStore } from './embedded-key-store.js';
import { MemoryFetchLimiter, RedisFetchLimiter, type FetchLimiter } from './fetch-limit.js';
import { mountKeys } from './http.js';
import type { KeyStore } from './key-store.js';
import { ScyllaKeyStore } from './scylla-key-store.js';

/**
 * The prekey directory on the same engine as the message store: embedded (its own lmdb environment
 * in `<dataDir>/keys`) or scylla (tables in the store's keyspace, its own client).
 */
export function createKeyStore(cfg: Pick<Config, 'store' | 'keys' | 'dataDir'>): KeyStore {
  const limits = { maxOneTimePreKeys: cfg.keys.maxOneTimePreKeys };
  return cfg.store.engine === 'scylla' ? new ScyllaKeyStore(scyllaOptionsOf(cfg.store), limits) : new EmbeddedKeyStore(join(cfg.dataDir, 'keys'), limits);
}

/** The prekey directory of one shard thread: its store and its HTTP routes (src/keys/http.ts). */
export interface Keys {
  readonly store: KeyStore;
  open(): Promise<void>;
  close(): Promise<void>;
  mount(app: TemplatedApp, deps: { verify: TokenVerifier; log: Logger }): void;
}

export function createKeys(cfg: Pick<Config, 'store' | 'keys' | 'dataDir' | 'cluster'>, onLow?: (user: string, device: string, remaining: number) => void): Keys {
  const store = createKeyStore(cfg);
  // Created on first use: a node whose clients never fetch bundles opens no Redis connection for it.
  let limiter: FetchLimiter | null = null;
  const fetchLimit: FetchLimiter = {
    kind: cfg.cluster.redisUrl === undefined ? 'memory' : 'redis',
    take(user) {
      limiter ??=
        cfg.cluster.redisUrl === undefined
          ? new MemoryFetchLimiter(cfg.keys.fetchPerMinute)
          : new RedisFetchLimiter(cfg.cluster.redisUrl, cfg.cluster.keyPrefix, cfg.keys.fetchPerMinute);
      return limiter.take(user);
    },
    close: async () => limiter?.close(),
  };
  return {
    store,
    open: () => store.open(),
    close: async () => {
      await Promise.allSettled([store.close(), fetchLimit.close()]);
    },
    mount(app, deps) {
      mountKeys(app, {
        keys: store,
        verify: deps.verify,
        lowThreshold: cfg.keys.lowThreshold,
        maxPerUpload: cfg.keys.maxPerUpload,
        fetchLimit,
        fetchPerMinute: cfg.keys.fetchPerMinute,
        log: deps.log,
        ...(onLow ? { onLow } : {}),
      });
    },
  };
}
