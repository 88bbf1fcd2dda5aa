import type { PresenceInfo } from './presence.js';

/**
 * The stored half of presence, the part that differs between memory and Redis; the rest (caps,
 * local watch index, events) is PresenceService. Targets are `u:<user>` or `c:<conv>`.
 *
 * Logical layout (Redis keys under the cluster's key prefix; the memory state mirrors them so the
 * contract suite can list them the same way):
 *
 *   presence:on:<user>       string, the node; expires with the online lease (PX ttlMs)
 *   presence:seen:<user>     string, last seen in ms; PX lastSeenTtlMs
 *   presence:w:<target>      sorted set, member = watching node, score = that entry's expiry in ms;
 *                            the key itself expires watchTtlMs after its last renewal
 *
 * Nothing is ever written for typing.
 */
export interface PresenceState {
  /** Starts or renews the online lease; true when the user was offline before (a transition). */
  setOnline(user: string, node: string, ttlMs: number, nowMs: number): Promise<boolean>;
  /** Ends the lease and records last seen. */
  setOffline(user: string, nowMs: number): Promise<void>;
  get(users: readonly string[], nowMs: number): Promise<PresenceInfo[]>;
  /** Adds or renews `node` as a watcher of each target until nowMs + ttlMs; prunes expired nodes. */
  addWatchers(targets: readonly string[], node: string, ttlMs: number, nowMs: number): Promise<void>;
  removeWatchers(targets: readonly string[], node: string): Promise<void>;
  /** The nodes whose watch of `target` has not expired. Read-only. */
  watchers(target: string, nowMs: number): Promise<string[]>;
  close(): Promise<void>;
}

export const userTarget = (user: string): string => `u:${user}`;
export const convTarget = (conv: string): string => `c:${conv}`;

export const onKey = (user: string): string => `presence:on:${user}`;
export const seenKey = (user: string): string => `presence:seen:${user}`;
export const watchersKey = (target: string): string => `presence:w:${target}`;
