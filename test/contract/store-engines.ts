/**
 * The store implementations the contract suite runs against. Each factory creates stores that share
 * one location (a directory or a keyspace), so `create()` twice gives a second, fresh instance over
 * the same data: that is how the suite checks restarts and cross-instance reads.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { ScyllaStore } from '../../src/store/scylla/scylla-store.js';
import type { ScyllaStoreOptions } from '../../src/store/options.js';
import type { Store } from '../../src/store/store.js';
import { requireCassandra, uniqueKeyspace } from '../support/env.js';

export const TEST_BUCKET_SIZE = 4;

export interface StoreFactory {
  name: 'embedded' | 'scylla';
  /** Shown in test names: the engine plus any variant (embedded's groupCommit mode). */
  label: string;
  create(): Store;
  /** Removes what the factory created (temp directory; keyspaces are left for inspection). */
  cleanup(): void;
}

export function embeddedFactory(groupCommit: 'engine' | 'writer' = 'engine'): StoreFactory {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-store-'));
  return {
    name: 'embedded',
    label: groupCommit === 'engine' ? 'embedded' : `embedded (groupCommit=${groupCommit})`,
    create: () =>
      new EmbeddedStore({ path: join(dir, 'db'), bucketSize: TEST_BUCKET_SIZE, idempotencyTtlMs: 3_600_000, groupCommit }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The options of a test ScyllaStore over `keyspace` on the test Cassandra (fails if there is none). */
export function scyllaTestOptions(keyspace: string): ScyllaStoreOptions {
  const cassandra = requireCassandra();
  return {
    contactPoints: cassandra.contactPoints,
    localDataCenter: cassandra.localDataCenter,
    keyspace,
    replication: { class: 'SimpleStrategy', replication_factor: '1' },
    readConsistency: 'localQuorum',
    writeConsistency: 'localQuorum',
    serialConsistency: 'localSerial',
    requestTimeoutMs: 20_000,
    connectTimeoutMs: 10_000,
    bucketSize: TEST_BUCKET_SIZE,
    idempotencyTtlMs: 3_600_000,
  };
}

export function scyllaFactory(suffix: string): StoreFactory {
  const opts = scyllaTestOptions(uniqueKeyspace(suffix));
  return {
    name: 'scylla',
    label: 'scylla',
    create: () => new ScyllaStore(opts),
    cleanup: () => {},
  };
}

/**
 * Every engine, always including Cassandra: a missing Cassandra fails the suite loudly. The embedded
 * engine runs in both group-commit modes (engine-wide, the default, and per writer).
 */
export function allFactories(suffix: string): StoreFactory[] {
  return [embeddedFactory(), embeddedFactory('writer'), scyllaFactory(suffix)];
}
