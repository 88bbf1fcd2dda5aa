import { Counter } from 'prom-client';
import type { AuthConfig } from '../config/schema.js';
import { registry } from '../metrics/registry.js';
import type { TokenVerifier } from './token-verifier.js';
import { REMOVED, type VerifyOutcome } from './verify.js';

/**
 * Device tombstones: when a device was last removed (`DELETE /devices/:device`, src/devices-http.ts),
 * so that a token issued before the removal cannot bring the device back. Kept where the rest of a
 * user's durable device data lives, on the store's engine: embedded (an lmdb environment of its own in
 * `<dataDir>/tombstones`, shared by every shard thread of the node and kept across restarts) or
 * scylla (a table in the store's keyspace, shared by every node). Not Redis: the cluster's Redis
 * holds soft state only (DESIGN.md 2.8), and a tombstone lost with it would let a stolen phone's
 * token back in.
 *
 * Contract:
 * - `put` records a removal at `removedAtMs` (milliseconds since the epoch, the server's clock); a
 *   later removal of the same device overwrites it. Durable when its promise resolves.
 * - `get` is the latest removal time of the device, or null when it was never removed or its
 *   tombstone is older than `keepMs`.
 * - A tombstone is kept `keepMs` (tombstoneKeepMs: auth.maxTokenLifetimeS + auth.clockToleranceS,
 *   plus a second for iat's resolution) and then dropped: scylla rows carry it as their TTL (fixed
 *   when written), embedded rows are swept. Until then a device that comes back with a newer token
 *   keeps its tombstone, which keeps refusing the tokens issued before the removal. After it no such
 *   token can still verify: verification refuses a token without iat, with iat in the future, or
 *   with exp - iat above the bound (src/auth/verify.ts), so a token issued before the removal has
 *   expired by then (a lost phone's token stays refused).
 * - Errors are StoreError (retryable when the engine is unreachable).
 */
export interface DeviceTombstones {
  readonly engine: 'embedded' | 'scylla' | 'memory';
  /** How long a tombstone is kept after its removal time, in ms. */
  readonly keepMs: number;
  open(): Promise<void>;
  close(): Promise<void>;
  put(user: string, device: string, removedAtMs: number): Promise<void>;
  get(user: string, device: string): Promise<number | null>;
}

/** In-memory tombstones (unit tests, tools); not shared across threads. */
export class MemoryTombstones implements DeviceTombstones {
  readonly engine = 'memory' as const;
  private readonly rows = new Map<string, number>();
  constructor(
    readonly keepMs = Number.POSITIVE_INFINITY,
    private readonly now: () => number = Date.now,
  ) {}
  open(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  put(user: string, device: string, removedAtMs: number): Promise<void> {
    this.rows.set(`${user}\u0000${device}`, removedAtMs);
    return Promise.resolve();
  }
  get(user: string, device: string): Promise<number | null> {
    const key = `${user}\u0000${device}`;
    const at = this.rows.get(key);
    if (at === undefined || at + this.keepMs > this.now()) return Promise.resolve(at ?? null);
    this.rows.delete(key);
    return Promise.resolve(null);
  }
}

/**
 * How long a tombstone must be kept: a token issued in or before the second of the removal
 * (iat <= removal) has exp <= iat + maxTokenLifetimeS and verifies until exp + clockToleranceS at
 * most; one second more covers iat's one-second resolution.
 */
export function tombstoneKeepMs(auth: Pick<AuthConfig, 'maxTokenLifetimeS' | 'clockToleranceS'>): number {
  return (auth.maxTokenLifetimeS + auth.clockToleranceS + 1) * 1000;
}

export type TombstoneCheck = 'none' | 'newer_token' | 'refused';

export const tombstoneMetrics = {
  checks: new Counter({
    name: 'ticks_devices_tombstone_checks_total',
    help: 'Verified tokens checked against device tombstones: none (device never removed), newer_token (issued after the removal: accepted), refused (issued before it, or without iat).',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  pruned: new Counter({
    name: 'ticks_devices_tombstones_pruned_total',
    help: 'Device tombstones removed by the embedded engine after they were no longer needed (auth.maxTokenLifetimeS + auth.clockToleranceS after the removal); scylla rows expire by TTL and are not counted.',
    registers: [registry],
  }),
};
for (const result of ['none', 'newer_token', 'refused'] as const) tombstoneMetrics.checks.inc({ result }, 0);

/**
 * True when a token issued at `iatS` (seconds, the `iat` claim; undefined when absent) predates a
 * removal at `removedAtMs`. `iat` has a resolution of one second, so a token must be issued in a
 * later second than the removal: a token minted in the very second of the removal is refused too
 * (the issuer mints another a second later). A token without `iat` cannot show it is newer.
 */
export function issuedBeforeRemoval(iatS: number | undefined, removedAtMs: number): boolean {
  return iatS === undefined || iatS * 1000 <= removedAtMs;
}

/**
 * Wraps a verifier: a valid token of a removed device that was issued before the removal becomes
 * `{ ok: false, reason: 'removed' }` (the gateway closes with 4507, HTTP answers 401 `auth.removed`).
 * One tombstone read per verified token (a point read by primary key). A failed read rejects, like a
 * verifier that cannot verify: the socket is closed with 4004 (retry later), HTTP answers 503.
 */
export function withTombstones(verify: TokenVerifier, tombstones: Pick<DeviceTombstones, 'get'>): TokenVerifier {
  return async (token) => {
    const outcome: VerifyOutcome = await verify(token);
    if (!outcome.ok) return outcome;
    const removedAtMs = await tombstones.get(outcome.user, outcome.device);
    if (removedAtMs === null) {
      tombstoneMetrics.checks.inc({ result: 'none' });
      return outcome;
    }
    if (issuedBeforeRemoval(outcome.iat, removedAtMs)) {
      tombstoneMetrics.checks.inc({ result: 'refused' });
      return REMOVED;
    }
    tombstoneMetrics.checks.inc({ result: 'newer_token' });
    return outcome;
  };
}
