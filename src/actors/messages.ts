/**
 * Messages between actors (and from the session handler to actors). They cross shard threads inside
 * `actor` thread frames (thread-frames.ts), so they are plain data: no functions, no class instances.
 * `self` messages are posted by an actor to its own system lane and never leave their thread.
 */
import type { ConversationKind, MessageEntry, ReceiptKind } from '../protocol/client-frames.js';
import type { CreatableKind, Role } from '../protocol/client-conv-frames.js';
import type { AppendResult } from '../store/types.js';
import type { SessionRef } from './session.js';

/** A message entry with the sender's cmid always present; user actors strip it for other users. */
export interface DeliveredEntry extends MessageEntry {
  cmid: string;
}

// ---- conversation actor ------------------------------------------------------------------------

export interface ConvSend {
  t: 'send';
  /** Where the `sent` or `error` answer goes. */
  session: SessionRef;
  id: number;
  cmid: string;
  body: Uint8Array;
  /** Media ids (send.media); absent when the send has none. */
  media?: string[];
}

/**
 * A device acknowledged holding the conversation up to `seq` (forwarded by its user actor, which has
 * cleared its pending deliveries). The conversation actor checks membership and the head, queues
 * the delivered-cursor write and fans the receipt out.
 */
export interface ConvDelivered {
  t: 'delivered';
  session: SessionRef;
  seq: number;
  /** Dacks of other devices for the same conversation, coalesced with this one (src/actors/dack-batcher.ts). */
  more?: DeviceDack[];
}

/** One device's cumulative dack of a conversation. */
export interface DeviceDack {
  session: SessionRef;
  seq: number;
}

/** A device read the conversation up to `seq`; the conversation actor checks, stores and fans out. */
export interface ConvRead {
  t: 'read';
  session: SessionRef;
  seq: number;
}

/** Self: the in-flight group commit finished. */
export interface ConvCommitted {
  t: 'committed';
  results: AppendResult[];
  durationMs: number;
  /** Membership rows of the batch's events could not be written (the activation ends and repairs). */
  rowsFailed?: boolean;
}

/** Self: the group fan-out window ended (ConversationDeps.fanoutWindowMs): deliver what it held. */
export interface ConvFanout {
  t: 'fanout';
}

/** Self: the in-flight group commit failed (`committed` holds the results of a committed prefix). */
export interface ConvCommitFailed {
  t: 'commit_failed';
  code: string;
  retryable: boolean;
  message: string;
  committed: AppendResult[];
  durationMs: number;
}

/** A membership or metadata operation (the conversation actor checks the sender's role). */
export type ConvOp =
  | { op: 'create'; cmid: string; kind: CreatableKind; name?: string; avatar?: string; members: string[] }
  | { op: 'add'; users: string[]; role: 'member' | 'admin' }
  | { op: 'remove'; user: string }
  | { op: 'role'; user: string; role: Role }
  | { op: 'leave' }
  | { op: 'join' }
  | { op: 'meta'; name?: string; avatar?: string };

/** A conv.create / member.* / conv.leave / conv.join / conv.meta request: answered `conv.ok` or `error`. */
export interface ConvOpMsg {
  t: 'op';
  session: SessionRef;
  id: number;
  op: ConvOp;
}

/** A `members` request: answered `members.page` or `error`. */
export interface ConvMembersMsg {
  t: 'members';
  session: SessionRef;
  id: number;
  after?: string;
  limit: number;
}

/** A `receipts` request (groups): answered `receipts.state` or `error`. */
export interface ConvReceiptsMsg {
  t: 'receipts';
  session: SessionRef;
  id: number;
  seq: number;
}

export type ConvMsg = ConvSend | ConvDelivered | ConvRead | ConvCommitted | ConvCommitFailed | ConvFanout | ConvOpMsg | ConvMembersMsg | ConvReceiptsMsg;

// ---- user actor --------------------------------------------------------------------------------

/** The gateway opened a session for one of the user's devices. Answered with an `attached` frame. */
export interface UserAttach {
  t: 'attach';
  session: SessionRef;
}

/** The session closed. Ignored unless it is still the device's current session. */
export interface UserDetach {
  t: 'detach';
  session: SessionRef;
}

/** New committed messages of a conversation, ascending seq, for every device of this user. */
export interface UserDeliver {
  t: 'deliver';
  conv: string;
  kind: ConversationKind;
  msgs: DeliveredEntry[];
}

/** A device acknowledged holding `conv` up to `seq` (cumulative). */
export interface UserDack {
  t: 'dack';
  session: SessionRef;
  conv: string;
  seq: number;
  /**
   * The session's shard already queued the cursor write (a channel the socket follows): clear the
   * device's pending deliveries only, do not forward to the conversation actor.
   */
  stored?: true;
}

/**
 * A receipt to show on this user's devices: another member's, or (for reads) this user's own from
 * `device`, which is then skipped. `device` reaches the client only on delivered receipts.
 */
export interface UserReceipt {
  t: 'receipt';
  conv: string;
  kind: ReceiptKind;
  user: string;
  device: string;
  seq: number;
  /** With user '*': every member of the group has received or read up to seq. */
  all?: true;
}

/** Self: a device's retry timer fired. */
export interface UserRetry {
  t: 'retry';
  device: string;
}

/**
 * System: a message for this actor was refused because its mailbox was full. Live delivery can no
 * longer be trusted, so the actor disconnects its devices (4001) and they resync.
 */
export interface UserOverflow {
  t: 'overflow';
}

export type UserMsg = UserAttach | UserDetach | UserDeliver | UserDack | UserReceipt | UserRetry | UserOverflow;

export interface ActorMessages {
  conv: ConvMsg;
  user: UserMsg;
}
