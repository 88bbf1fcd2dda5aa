/**
 * Live delivery of broadcast-channel posts: fan-out on read (DESIGN.md 6, docs/CLUSTER.md
 * "Channels"). A channel is one log plus a cursor per reader; nothing is written or kept per
 * subscriber for a post. The conversation actor of a channel hands each committed batch to
 * `ChannelFanout.publish` instead of telling every member's user actor; the implementation
 * (src/cluster/channel-delivery.ts) sends it once per node that has subscribers online, and each
 * shard thread of that node publishes it to a uWS topic (`ch:<conv>`), so the `msg` frame is encoded
 * once per thread and reaches every subscribed socket there.
 *
 * Guarantee: at-most-once, like presence. A subscriber that misses a live post (offline, a lost bus
 * frame, a slow socket skipped by uWS) sees a seq gap at the next post and catches up by cursor with
 * `sync` or `history`, which cover every conversation of the user, channels included.
 */
import type { SessionRef } from './session.js';
import type { DeliveredEntry } from './messages.js';

export interface ChannelFanout {
  /** New committed posts of channel `conv` (ascending): one publish per node with subscribers
   *  online, then uWS topic `ch:<conv>` inside each shard. At-most-once; readers catch up by cursor. */
  publish(conv: string, msgs: DeliveredEntry[]): void;
  /** A user joined or left a channel: its live sessions (any node) subscribe/unsubscribe the topic.
   *  `via`: the session that asked (conv.join / conv.leave), reached directly even before the
   *  session registry lists it (its registration may still be in flight). */
  membership(conv: string, user: string, joined: boolean, via?: SessionRef): void;
}

/**
 * The channel side of a shard's sessions (src/actors/shard-actors.ts calls it like PresenceFrames).
 * `opened` subscribes the new session's socket to the topics of the user's channels and resolves
 * once that is done and this thread's interest is registered cluster-wide, so a sync that starts
 * after it misses nothing: a post committed before the sync read its heads is in the sync, and one
 * committed after is published to a node already listed. Never rejects (soft state).
 */
export interface ChannelSessions {
  opened(session: SessionRef): Promise<void>;
  closed(session: SessionRef): void;
  /**
   * True when the session's socket follows channel `conv` on this thread (it was a member when it
   * subscribed). Its dacks of the channel then store the cursor on this shard, without a hop through
   * the channel's conversation actor: with 10k subscribers each post brings 10k dacks, which would
   * all queue in that one actor's mailbox.
   */
  follows(session: SessionRef, conv: string): boolean;
}

/**
 * The uWS topics of one shard thread (implemented by the gateway, the only folder that imports
 * uWebSockets.js). Subscriptions end by themselves when a socket closes.
 */
export interface ChannelTopics {
  /** Subscribes the session's socket to `topic`; false when the socket is gone or closing. */
  subscribe(session: SessionRef, topic: string): boolean;
  /** Unsubscribes; false when the socket is gone or was not subscribed. */
  unsubscribe(session: SessionRef, topic: string): boolean;
  /**
   * Sends `bytes` (an encoded server frame) to every socket of this thread subscribed to `topic`,
   * except the socket of `except` when given (the device that sent the post: it has its `sent`).
   */
  publish(topic: string, bytes: Uint8Array, except?: SessionRef): void;
  /** Sockets of this thread subscribed to `topic`. */
  subscribers(topic: string): number;
}

/** The uWS topic of channel `conv` (conversation ids never contain a NUL, so topics never collide). */
export function channelTopic(conv: string): string {
  return `ch:${conv}`;
}
