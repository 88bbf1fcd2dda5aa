import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { scyllaOptionsOf } from '../store/scylla/aux-tables.js';
import { EmbeddedTombstones } from './embedded-tombstones.js';
import { ScyllaTombstones } from './scylla-tombstones.js';
import type { DeviceTombstones } from './tombstones.js';

/** Device tombstones on the store's engine (src/auth/tombstones.ts says why there). */
export function createTombstones(cfg: Pick<Config, 'store' | 'dataDir'>): DeviceTombstones {
  return cfg.store.engine === 'scylla' ? new ScyllaTombstones(scyllaOptionsOf(cfg.store)) : new EmbeddedTombstones(join(cfg.dataDir, 'tombstones'));
}
