/**
 * The actor directory: which activation (node + activation id) owns an actor address, as a lease,
 * with a fencing epoch per ownership.
 *
 * Contract (every implementation, checked by test/contract/directory.test.ts):
 *
 * - Addresses are `kind/key` (`conv/c123`, `user/u9`): a non-empty kind, a `/`, a non-empty key,
 *   at most 512 characters. Anything else is rejected with `cluster.invalid`.
 * - `register` is first-writer-wins and atomic. If the address has a live owner, nothing is
 *   written and the result is `{ won: false, owner }` with that owner: the caller must not activate;
 *   it forwards whatever it holds to the owner. Otherwise the caller becomes the owner with a lease
 *   of `leaseMs` and `{ won: true, owner }` describes it. Expected outcomes are data, never errors.
 * - A register by the activation that already owns the live entry (a retry after a lost reply)
 *   wins again with the same epoch and extends the lease: register is idempotent.
 * - Every new ownership gets an epoch strictly greater than every epoch ever issued for the address,
 *   including after the previous owner's entry expired or was unregistered: a per-address counter
 *   that is never deleted remembers the last epoch. The epoch is what the store fences writes
 *   with (Store.openWriter). Epochs are `max(last + 1, issuerNowMs * 1000)`, so they are also
 *   above the single-node ClockEpochSource's epochs and keep increasing after a Redis data loss
 *   wipes the counters, as long as the issuing clock has not stepped back. That last part is a
 *   best effort, not the safety argument: after a data loss two activations may briefly both
 *   believe they own an address, and the store's epoch fence is what keeps them from overwriting
 *   each other's acked writes (DESIGN.md 2.7).
 * - Leases: an entry disappears `leaseMs` after its last register or renew unless renewed.
 *   `renew` extends only the caller's own live lease; `false` means the caller no longer owns the
 *   address (expired, taken over, or unregistered): it must stop acknowledging writes at once and
 *   deactivate. A renew that throws (Redis unreachable) proves nothing: the activation must stop
 *   acking when its own lease runs out, measured conservatively on its own monotonic clock from
 *   the moment it *sent* its last successful renew (or register), minus a safety margin.
 * - `leaseExpiresAtMs` is on the directory's clock (Redis server time for Redis); it is for
 *   diagnostics and routing hints, not for local deadline arithmetic across machines.
 * - `unregister` is compare-and-delete: it removes the entry only if it is the caller's own
 *   activation, returns whether it did, and never touches the epoch counter. Idempotent.
 * - `lookup` returns the live owner or null. A result may be stale by the time it arrives; a
 *   message routed on it must be acked by the owner, never assumed delivered.
 * - Errors: `ClusterError` only. `cluster.unavailable` and `cluster.timeout` are retryable; a
 *   timeout means the operation may or may not have happened (all operations are idempotent for
 *   the same activation, so retrying is safe). `cluster.invalid` for bad arguments.
 */
export interface Activation {
  /** The node id (one OS process) that hosts the activation. */
  node: string;
  /** Unique per activation: a re-activation on the same node gets a new id. */
  activationId: string;
}

export interface DirectoryOwner extends Activation {
  /** Fencing epoch of this ownership; positive integer below 2^53. */
  epoch: number;
  /** When the lease runs out unless renewed, on the directory's clock (ms since the epoch). */
  leaseExpiresAtMs: number;
}

export interface RegisterResult {
  /** True if the caller owns the address (new registration or idempotent retry). */
  won: boolean;
  /** The winner: the caller when `won`, otherwise the existing live owner. */
  owner: DirectoryOwner;
}

export interface DirectoryLease {
  address: string;
  activation: Activation;
}

export interface Directory {
  readonly impl: 'memory' | 'redis';
  /** Lease length for every entry, in ms. */
  readonly leaseMs: number;

  register(address: string, activation: Activation): Promise<RegisterResult>;
  /** Extends the caller's own lease; false when it no longer owns the address. */
  renew(address: string, activation: Activation): Promise<boolean>;
  /**
   * A node's heartbeat: renews many leases in one round trip. `result[i]` answers `leases[i]`.
   * Not atomic across addresses (each renew is atomic on its own).
   */
  renewMany(leases: readonly DirectoryLease[]): Promise<boolean[]>;
  /** Compare-and-delete of the caller's own entry; false when it was not (or no longer) the owner. */
  unregister(address: string, activation: Activation): Promise<boolean>;
  lookup(address: string): Promise<DirectoryOwner | null>;
}

export const MAX_ADDRESS_LENGTH = 512;
