/**
 * Versioned schema migrations of the embedded engine. `meta['schema_version']` holds the version on
 * disk; `migrate` runs every newer migration in order inside one lmdb transaction at `open()`, so a
 * crash mid-way leaves the old version and several processes opening the same environment at once
 * serialize on lmdb's write lock (the second sees the new version and runs nothing).
 *
 * Adding a migration: append an entry with the next version; never edit or reorder shipped ones.
 */
import { StoreError } from '../errors.js';
import { indexLegacyDepartures } from './departures.js';
import { META_LAYOUT, META_SCHEMA_VERSION } from './keys.js';
import type { LayoutRow } from './records.js';
import type { Tables } from './tables.js';

interface Migration {
  version: number;
  description: string;
  /** Runs inside the migration transaction; must only read and write through `tables`. */
  up(tables: Tables, opts: MigrateOptions): void;
}

export interface MigrateOptions {
  bucketSize: number;
  /** The clock and retention.departuresS (in ms) at open; migration 2 dates legacy departures with them. */
  nowMs: number;
  departuresRetentionMs: number;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'initial layout: record the bucket size that every message key depends on',
    up(tables, opts) {
      const layout: LayoutRow = { bucketSize: opts.bucketSize };
      tables.meta.put(META_LAYOUT, layout);
    },
  },
  {
    version: 2,
    description: 'departures expire: departures_expiry index, legacy rows kept one retention window from now',
    up(tables, opts) {
      indexLegacyDepartures(tables, opts.nowMs, opts.departuresRetentionMs);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

type Outcome =
  | { kind: 'ok'; from: number; to: number }
  | { kind: 'too_new'; onDisk: number }
  | { kind: 'layout'; onDisk: LayoutRow | undefined };

/** Brings the environment to SCHEMA_VERSION. Returns the version found on disk before migrating. */
export async function migrate(tables: Tables, opts: MigrateOptions): Promise<number> {
  let failed: { version: number; err: unknown } | undefined;
  // A child transaction, so a migration that throws is rolled back rather than committed in part.
  const outcome = await tables.root.childTransaction((): Outcome => {
    const onDisk = (tables.meta.get(META_SCHEMA_VERSION) as number | undefined) ?? 0;
    if (onDisk > SCHEMA_VERSION) return { kind: 'too_new', onDisk };
    for (const m of MIGRATIONS) {
      if (m.version <= onDisk) continue;
      try {
        m.up(tables, opts);
      } catch (err) {
        failed = { version: m.version, err };
        throw err;
      }
      tables.meta.put(META_SCHEMA_VERSION, m.version);
    }
    const layout = tables.meta.get(META_LAYOUT) as LayoutRow | undefined;
    // Message keys embed floor(seq / bucketSize): reading them with another size would miss messages.
    if (layout?.bucketSize !== opts.bucketSize) return { kind: 'layout', onDisk: layout };
    return { kind: 'ok', from: onDisk, to: SCHEMA_VERSION };
  }).catch((err: unknown) => {
    if (failed) {
      throw new StoreError('store.schema', `embedded store migration ${failed.version} failed`, failed.err);
    }
    throw err;
  });
  switch (outcome.kind) {
    case 'too_new':
      throw new StoreError(
        'store.schema',
        `embedded store schema_version ${outcome.onDisk} is newer than this code understands (${SCHEMA_VERSION})`,
      );
    case 'layout':
      throw new StoreError(
        'store.schema',
        `store.bucketSize is ${opts.bucketSize} but the embedded store on disk was created with ` +
          `${outcome.onDisk?.bucketSize ?? 'no recorded bucket size'}; bucketSize cannot change for existing data`,
      );
    case 'ok':
      return outcome.from;
  }
}
