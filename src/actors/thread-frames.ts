/**
 * Frames between the shard threads of one node, carried by a ShardLink as msgpack bytes, and between
 * shard threads of different nodes, carried by the cluster bus (src/cluster/bus) to the channel of
 * the target thread (`<nodeId>.<shard>`, see src/cluster/routing.ts). Versioned:
 * a frame from a thread running other code (a mixed build during a restart) is refused loudly, not
 * misread. The payloads are trusted (our own threads), so decoding checks the envelope only.
 *
 * Frames:
 * - `actor`    a message for the actor `kind/key`, which lives on the receiving shard (or, for a
 *              conversation, whose in-node home the receiving shard is: it checks ownership and
 *              forwards when another node owns it). `hops` counts forwards between nodes (bus), so
 *              disagreeing caches cannot bounce a message forever.
 * - `push`     a server frame for a connection whose socket the receiving shard owns.
 * - `close`    close such a connection with a close code.
 * - `attached` the user actor registered the connection's session (the session may start syncing).
 * - `users`    (bus only) messages for the node-local user actors of several users, one frame per
 *              (fan-out, node): `items[i].msg` goes to every user in `items[i].users` on the receiving
 *              node, which does not fan out further.
 * - `channel`  new posts of a broadcast channel for the uWS topic `ch:<conv>` of the receiving shard
 *              (src/cluster/channel-delivery.ts). `fwd`: the receiver is its node's entry point (one
 *              bus publish per node) and hands the frame on to every other shard of its node.
 * - `chsub`    subscribe (`joined`) or unsubscribe the socket `conn` of the receiving shard to the
 *              topic of channel `conv` (a join or leave; the session registry found the socket).
 */
import { Packr, Unpackr } from 'msgpackr';
import type { MessageEntry, ServerFrame } from '../protocol/client-frames.js';
import type { ConvMsg, UserMsg } from './messages.js';
import type { SessionRef } from './session.js';

export const THREAD_FRAME_VERSION = 1;

interface Versioned {
  v: typeof THREAD_FRAME_VERSION;
}

export type ThreadFrame =
  | (Versioned & { t: 'actor'; kind: 'conv'; key: string; msg: ConvMsg; hops?: number })
  | (Versioned & { t: 'actor'; kind: 'user'; key: string; msg: UserMsg })
  | (Versioned & { t: 'push'; conn: SessionRef; frame: ServerFrame })
  | (Versioned & { t: 'close'; conn: SessionRef; code: number; reason: string })
  | (Versioned & { t: 'attached'; conn: SessionRef })
  | (Versioned & { t: 'users'; items: UserBatchItem[] })
  | ChannelThreadFrame;

/** The frames of live channel delivery (src/cluster/channel-delivery.ts). */
export type ChannelThreadFrame =
  | (Versioned & { t: 'channel'; conv: string; msgs: MessageEntry[]; fwd?: true })
  | (Versioned & { t: 'chsub'; conn: SessionRef; conv: string; joined: boolean });

/** One message for the local user actors of `users` (a `users` frame). */
export interface UserBatchItem {
  users: string[];
  msg: UserMsg;
}

export type ThreadFrameType = ThreadFrame['t'];
export const THREAD_FRAME_TYPES: readonly ThreadFrameType[] = ['actor', 'push', 'close', 'attached', 'users', 'channel', 'chsub'];

export class ThreadFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ThreadFrameError';
  }
}

// Records off: every frame stands alone (a shared record table would make a restarted thread unable
// to read the next frame). Undefined round-trips as msgpackr's own extension: both ends are msgpackr.
const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, moreTypes: false, mapsAsObjects: true });

export function encodeThreadFrame(frame: ThreadFrame): Uint8Array {
  return packr.pack(frame);
}

/** Decodes and checks the envelope; throws ThreadFrameError on anything this build cannot handle. */
export function decodeThreadFrame(bytes: Uint8Array): ThreadFrame {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (err) {
    throw new ThreadFrameError(`undecodable thread frame: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null) throw new ThreadFrameError('thread frame is not a map');
  const f = value as { v?: unknown; t?: unknown; kind?: unknown };
  if (f.v !== THREAD_FRAME_VERSION) throw new ThreadFrameError(`thread frame version ${String(f.v)} is not ${THREAD_FRAME_VERSION}`);
  if (typeof f.t !== 'string' || !(THREAD_FRAME_TYPES as readonly string[]).includes(f.t)) {
    throw new ThreadFrameError(`unknown thread frame type ${String(f.t)}`);
  }
  if (f.t === 'actor' && f.kind !== 'conv' && f.kind !== 'user') throw new ThreadFrameError(`unknown actor kind ${String(f.kind)}`);
  return value as ThreadFrame;
}
