import type { StoreConfig } from '../config/schema.js';
import { EmbeddedStore } from './embedded/embedded-store.js';
import { ScyllaStore } from './scylla/scylla-store.js';
import type { Store } from './store.js';

/** Builds the configured store engine. Only the composition root (src/node.ts) should call this. */
export function createStore(cfg: StoreConfig): Store {
  const common = { bucketSize: cfg.bucketSize, idempotencyTtlMs: cfg.idempotencyTtlMs };
  switch (cfg.engine) {
    case 'embedded':
      return new EmbeddedStore({ ...common, path: cfg.embedded.path, groupCommit: cfg.embedded.groupCommit });
    case 'scylla': {
      const s = cfg.scylla;
      return new ScyllaStore({
        ...common,
        contactPoints: [...s.contactPoints],
        localDataCenter: s.localDataCenter,
        keyspace: s.keyspace,
        replication: { ...s.replication },
        readConsistency: s.readConsistency,
        writeConsistency: s.writeConsistency,
        serialConsistency: s.serialConsistency,
        requestTimeoutMs: s.requestTimeoutMs,
        connectTimeoutMs: s.connectTimeoutMs,
        ...(s.username === undefined ? {} : { username: s.username }),
        ...(s.password === undefined ? {} : { password: s.password }),
      });
    }
  }
}
