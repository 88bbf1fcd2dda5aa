/**
 * Group and channel frames of the client wire protocol (see client-frames.ts for the protocol as a
 * whole): creating groups and channels, membership and metadata changes with the system events they
 * log, member pages, and per-member receipt state. Pure code; the schemas are in
 * client-frame-schemas.ts.
 */

/** Most users in one `member.add` or `conv.create.members`. */
export const MAX_MEMBERS_PER_OP = 256;
/** Longest group or channel name, in UTF-16 code units. */
export const MAX_CONV_NAME = 128;

/** A member's role in a group or channel. Direct conversations have two `member`s. */
export type Role = 'owner' | 'admin' | 'member';
/** Kinds a client can create (direct conversations are created by the first send). */
export type CreatableKind = 'group' | 'channel';
export type SysOp = 'create' | 'add' | 'remove' | 'leave' | 'role' | 'meta';

/**
 * A membership or metadata event of a group or channel, ordered in the log like a message (it holds
 * a seq; its entry has an empty body). `by` made the change; `users` are the users it concerns
 * (created with, added, removed, leaving, or whose role changed to `role`).
 */
export interface SysEvent {
  op: SysOp;
  by: string;
  users?: string[];
  role?: Role;
  name?: string;
  avatar?: string;
  kind?: CreatableKind;
}

// ---- client -> server ----------------------------------------------------------------------------

/**
 * Create a group or channel; the creator is its owner, `members` join as `member`. The id is derived
 * from (user, kind, cmid), so a retried create returns the same conversation. Answered by `conv.ok`.
 */
export interface ConvCreateFrame {
  t: 'conv.create';
  id: number;
  cmid: string;
  kind: CreatableKind;
  name?: string;
  avatar?: string;
  members?: string[];
}

/** Add users to a group or channel (owner: any role; admin: role `member` only). */
export interface MemberAddFrame {
  t: 'member.add';
  id: number;
  conv: string;
  users: string[];
  role?: 'member' | 'admin';
}

export interface MemberRemoveFrame {
  t: 'member.remove';
  id: number;
  conv: string;
  user: string;
}

export interface MemberRoleFrame {
  t: 'member.role';
  id: number;
  conv: string;
  user: string;
  role: Role;
}

/** Leave a group, or unsubscribe from a channel. */
export interface ConvLeaveFrame {
  t: 'conv.leave';
  id: number;
  conv: string;
}

/** Subscribe to a channel (any authenticated user). */
export interface ConvJoinFrame {
  t: 'conv.join';
  id: number;
  conv: string;
}

/** Change a group's or channel's name and/or avatar (a media id). */
export interface ConvMetaFrame {
  t: 'conv.meta';
  id: number;
  conv: string;
  name?: string;
  avatar?: string;
}

/** A page of members, ordered by user id, after `after`. Answered by `members.page`. */
export interface MembersFrame {
  t: 'members';
  id: number;
  conv: string;
  after?: string;
  limit: number;
}

/** Per-member delivered/read state of a group at `seq`. Answered by `receipts.state`. */
export interface ReceiptsFrame {
  t: 'receipts';
  id: number;
  conv: string;
  seq: number;
}

/** Client frames answered by `conv.ok` (or `error`). */
export type ConvOpFrame = ConvCreateFrame | MemberAddFrame | MemberRemoveFrame | MemberRoleFrame | ConvLeaveFrame | ConvJoinFrame | ConvMetaFrame;

// ---- server -> client ----------------------------------------------------------------------------

/** A conversation operation succeeded. `seq` is its event's seq in the log, 0 when nothing was written. */
export interface ConvOkFrame {
  t: 'conv.ok';
  id: number;
  conv: string;
  seq: number;
}

export interface MemberEntry {
  user: string;
  role: Role;
  /** When the user joined (server ms). */
  joined: number;
}

export interface MembersPageFrame {
  t: 'members.page';
  id: number;
  conv: string;
  members: MemberEntry[];
  /** `after` for the next page, or null when this was the last. */
  next: string | null;
}

/** Who of a group's members received and read `seq`, and up to where every member did. */
export interface ReceiptsStateFrame {
  t: 'receipts.state';
  id: number;
  conv: string;
  seq: number;
  delivered: string[];
  read: string[];
  deliveredAll: number;
  readAll: number;
}
