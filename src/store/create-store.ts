import type { RetentionConfig, StoreConfig } from '../config/schema.js';
import { EmbeddedStore } from './embedded/embedded-store.js';
import { scyllaOptionsOf } from './scylla/aux-tables.js';
import { ScyllaStore } from './scylla/scylla-store.js';
import type { Store } from './store.js';

/** Builds the configured store engine. Only the composition root (src/node.ts) should call this. */
export function createStore(cfg: StoreConfig, retention?: RetentionConfig): Store {
  const common = { bucketSize: cfg.bucketSize, idempotencyTtlMs: cfg.idempotencyTtlMs, departuresRetentionS: retention?.departuresS };
  switch (cfg.engine) {
    case 'embedded':
      return new EmbeddedStore({ ...common, path: cfg.embedded.path, groupCommit: cfg.embedded.groupCommit });
    case 'scylla':
      return new ScyllaStore({ ...scyllaOptionsOf(cfg), departuresRetentionS: retention?.departuresS });
  }
}
