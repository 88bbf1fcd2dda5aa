/**
 * Presence and typing frames of the client wire protocol (see client-frames.ts for the protocol as
 * a whole): watching users and conversations, presence state and changes, typing indicators. Pure
 * code; the schemas are in client-frame-schemas.ts.
 */

/**
 * Most users plus conversations in one `presence.sub` or `presence.unsub`. What a connection may
 * watch in all is cluster.presenceCap (exceeding it answers too_many_watches).
 */
export const MAX_PRESENCE_TARGETS = 256;

// ---- client -> server ----------------------------------------------------------------------------

/**
 * Watch the presence (online, last seen) of `users` and the typing indicators of `convs`, the chats
 * open on this device (subscribe-on-open). Answered by `presence.state` with the users' current
 * presence; later changes arrive as `presence` and `typing.event` frames while the connection lives.
 * Idempotent; the watches of a connection end with it.
 */
export interface PresenceSubFrame {
  t: 'presence.sub';
  id: number;
  users?: string[];
  convs?: string[];
}

/** Stop watching (a chat was closed). No answer; unknown targets are ignored. */
export interface PresenceUnsubFrame {
  t: 'presence.unsub';
  users?: string[];
  convs?: string[];
}

/** This device's user is typing (or paused) in `conv`. Never stored; no answer. */
export interface TypingFrame {
  t: 'typing';
  conv: string;
  state: TypingState;
}

export type TypingState = 'typing' | 'paused';

// ---- server -> client ----------------------------------------------------------------------------

/** A user's presence: online now, and last seen (server ms; null when never seen). */
export interface PresenceEntry {
  user: string;
  online: boolean;
  lastSeen: number | null;
}

/** Answer to `presence.sub`: the current presence of the users it named (in request order). */
export interface PresenceStateFrame {
  t: 'presence.state';
  id: number;
  users: PresenceEntry[];
}

/** A watched user came online or went offline (`lastSeen` is the server time of the change). */
export interface PresenceEventFrame extends PresenceEntry {
  t: 'presence';
}

/** Another member's device is typing (or paused) in a watched conversation. */
export interface TypingEventFrame {
  t: 'typing.event';
  conv: string;
  user: string;
  device: string;
  state: TypingState;
}

