/**
 * Presence, last seen and typing: soft state (DESIGN.md 2.8, 4). Losing any of it never loses a
 * message; at worst a contact shows a stale dot until the next change or chat open.
 *
 * Contract (every implementation, checked by test/contract/presence.test.ts):
 *
 * - **Online is a lease.** `setOnline(user, node, ttlMs)` marks the user online for `ttlMs`; the
 *   caller renews it (heartbeat) well before it runs out. When it runs out (the node died, a
 *   heartbeat was lost) the user is offline for `get`, silently: no event is pushed for an expiry,
 *   watchers see it at their next chat open (`watch` returns a fresh snapshot). The caller is the
 *   user's actor, which knows all of the user's devices: it calls `setOnline` while any device is
 *   connected and `setOffline` when the last one leaves.
 * - **Last seen is server time**: the time of the last `setOnline` (heartbeat) or of `setOffline`,
 *   from this process's clock, never from a client. It outlives the online lease (kept for
 *   `lastSeenTtlMs`, default 90 days). `lastSeenMs` is null for a user never seen (or forgotten).
 * - **Subscribe-on-open.** A connection watches the users and conversations whose chats are open,
 *   at most `cap` targets in all (users plus conversations). A call that would go over the cap
 *   changes nothing and returns `over_cap`: never a silent truncation. Watching is idempotent.
 * - **Events reach watching nodes only.** Each watched target has a set of watching nodes with a
 *   per-node expiry; the node that changes a user's presence or sends typing publishes one event
 *   per watching node (fan-out bounded by open chats, never by contact lists), and the receiving
 *   node hands it to its listener with the local connections that watch the target. The node keeps
 *   its entries alive by renewing them every `watchTtlMs / 3`; a dead node's entries expire after
 *   `watchTtlMs`, and entries lost with Redis data come back at the next renewal.
 * - **Events are at-most-once state, not a log.** They travel over a bus (bus.ts) on the
 *   per-node channel `presence:node:<node>`, separate from the actors' frame channel so presence
 *   traffic can never delay message delivery. A lost event leaves a stale indicator, nothing more.
 *   `online` events are published on the offline-to-online transition only (not per heartbeat);
 *   `offline` events on every `setOffline`.
 * - **Typing is never stored.** `typing` reads the conversation's watching nodes and publishes; it
 *   writes no key. Who may send typing or watch whom (membership, contacts) is the caller's check.
 * - **Errors** are ClusterErrors: `cluster.unavailable` / `cluster.timeout` (retryable) from Redis,
 *   `cluster.invalid` for bad arguments (empty ids, a non-positive TTL or cap, a watch for a node
 *   this instance does not `listen` on). Expected outcomes (`over_cap`) are results.
 */
export interface Presence {
  setOnline(user: string, node: string, ttlMs: number): Promise<void>;
  setOffline(user: string): Promise<void>;
  /** One entry per requested user, in request order. */
  get(users: readonly string[]): Promise<PresenceInfo[]>;

  /**
   * Receives the presence events addressed to `node` (the local node); watches for a node are only
   * accepted once it has a listener on this instance, because the local connections that watch a
   * target are known here.
   */
  listen(node: string, onEvent: PresenceListener): Promise<{ unsubscribe(): Promise<void> }>;
  /** Subscribes a connection to users' presence; on success returns their current presence. */
  watch(watcher: Watcher, users: readonly string[], cap: number): Promise<UserWatchResult>;
  /** Subscribes a connection to typing in conversations; shares the cap with `watch`. */
  watchConversations(watcher: Watcher, convs: readonly string[], cap: number): Promise<WatchResult>;
  unwatch(watcher: Watcher, users: readonly string[]): Promise<void>;
  unwatchConversations(watcher: Watcher, convs: readonly string[]): Promise<void>;
  /** Drops every watch of a connection (it closed). Idempotent. */
  unwatchAll(watcher: Watcher): Promise<void>;

  /** Sends a typing indicator to the nodes watching `conv`; returns how many nodes it went to. */
  typing(conv: string, user: string, device: string, state: TypingState): Promise<number>;

  /** Stops renewal, removes this instance's watches (best effort) and closes connections. */
  close(): Promise<void>;
}

export interface PresenceInfo {
  user: string;
  online: boolean;
  lastSeenMs: number | null;
}

/** A connection: its node (where its presence events go) and its id, unique on that node. */
export interface Watcher {
  node: string;
  connId: string;
}

export type TypingState = 'typing' | 'paused';

export interface OverCap {
  result: 'over_cap';
  /** Targets the connection watches (unchanged by the refused call). */
  watching: number;
  cap: number;
}

export type WatchResult = { result: 'ok'; watching: number } | OverCap;
export type UserWatchResult = { result: 'ok'; watching: number; presence: PresenceInfo[] } | OverCap;

export type PresenceEvent =
  | { type: 'presence'; user: string; online: boolean; lastSeenMs: number }
  | { type: 'typing'; conv: string; user: string; device: string; state: TypingState };

/** `connIds`: the connections of this node watching the event's user or conversation (non-empty). */
export type PresenceListener = (event: PresenceEvent, connIds: readonly string[]) => void;

/** Defaults; every one can be overridden per instance. */
export const PRESENCE_DEFAULTS = Object.freeze({
  watchTtlMs: 60_000,
  lastSeenTtlMs: 90 * 24 * 3_600_000,
});
