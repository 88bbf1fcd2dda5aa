/**
 * The session registry: for each user, the devices that are connected right now and the node (and
 * connection) each one is on. Soft state (DESIGN.md 2.8): it routes live deliveries and decides
 * whether to push; losing it never loses a message, only delays it until the device syncs.
 *
 * Contract (every implementation, checked by test/contract/sessions.test.ts):
 *
 * - An entry is (user, device) → { node, connId } with its own expiry, `ttlMs` after its last
 *   `put` or successful `refresh`. Expired entries are never listed. One device has at most one
 *   entry: the newest connection wins.
 * - `put` creates or replaces the device's entry and returns the connection it replaced (null if
 *   none, or if it was the same connection): the node holding a replaced connection should close it
 *   ("replaced by a newer connection"). Idempotent for the same connection.
 * - `remove` deletes the entry only if it is still that connection (compare-and-delete), so a late
 *   close of an old connection never removes its replacement. Returns whether it deleted.
 * - `refresh` extends live entries that are still the given connection, many in one round trip
 *   (a node's heartbeat); `result[i]` answers `entries[i]`. `false` means the entry expired or was
 *   replaced: the gateway should `put` again if the connection is still open.
 * - `list` returns the user's live devices, in no particular order, each with its expiry on the
 *   registry's clock (Redis server time for Redis). `listMany` (optional) answers like `list` for
 *   each user, in one round trip.
 * - Users and devices are non-empty strings of at most 256 characters; ttlMs is a positive
 *   integer. Anything else is `cluster.invalid`.
 * - Errors: `ClusterError` only; `cluster.unavailable` / `cluster.timeout` are retryable and every
 *   operation is safe to retry.
 */
export interface SessionConn {
  /** Node id of the process that holds the socket. */
  node: string;
  /** Unique per connection, so an old connection can be told from its replacement. */
  connId: string;
}

export interface SessionEntry extends SessionConn {
  device: string;
  expiresAtMs: number;
}

export interface SessionRefresh {
  user: string;
  device: string;
  conn: SessionConn;
}

export interface SessionRegistry {
  readonly impl: 'memory' | 'redis';
  put(user: string, device: string, conn: SessionConn, ttlMs: number): Promise<{ replaced: SessionConn | null }>;
  remove(user: string, device: string, conn: SessionConn): Promise<boolean>;
  refresh(entries: readonly SessionRefresh[], ttlMs: number): Promise<boolean[]>;
  list(user: string): Promise<SessionEntry[]>;
  /**
   * Optional: `list` of many users in one round trip (a node's fan-out); `result[i]` answers
   * `users[i]`. Fails as a whole when any lookup fails.
   */
  listMany?(users: readonly string[]): Promise<SessionEntry[][]>;
}

export const MAX_SESSION_ID_LENGTH = 256;
