import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { scyllaOptionsOf } from '../store/scylla/aux-tables.js';
import { EmbeddedTombstones } from './embedded-tombstones.js';
import { ScyllaTombstones } from './scylla-tombstones.js';
import { tombstoneKeepMs, type DeviceTombstones } from './tombstones.js';

/** Device tombstones on the store's engine (src/auth/tombstones.ts says why there, and for how long). */
export function createTombstones(cfg: Pick<Config, 'store' | 'dataDir' | 'auth'>): DeviceTombstones {
  const keepMs = tombstoneKeepMs(cfg.auth);
  return cfg.store.engine === 'scylla'
    ? new ScyllaTombstones(scyllaOptionsOf(cfg.store), keepMs)
    : new EmbeddedTombstones(join(cfg.dataDir, 'tombstones'), keepMs);
}
