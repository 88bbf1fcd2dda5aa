/**
 * Membership and metadata of groups and channels, as pure functions for the conversation actor:
 * the permission matrix (docs/PROTOCOL.md section 3.7), the events an operation writes to the log,
 * and how an event changes the member set.
 *
 * Events are messages of the log whose `senderDevice` is the reserved `~` (not a valid device id, so
 * no client can forge one) and whose body is the msgpack of the `sys` object (SysEvent). Every event
 * is absolute for the users it names (`add` sets their role, `remove`/`leave` deletes them, `role`
 * sets the role), so replaying the events after any seq on top of member rows that may already
 * reflect some of them gives the same result: that is how an activation repairs rows left behind by
 * a crash between the append and the row writes (see ConversationActor).
 */
import { Packr, Unpackr } from 'msgpackr';
import type { ConversationKind } from '../protocol/client-frames.js';
import type { Role, SysEvent } from '../protocol/client-conv-frames.js';
import type { ErrorCode } from '../protocol/codes.js';
import type { ConvOp } from './messages.js';

/** The reserved sender device of membership/metadata events. */
export const SYS_DEVICE = '~';
/** Conversation meta key of the pending-rows marker: the seq up to which rows are known applied. */
export const PENDING_KEY = '~pending';

export interface MemberState {
  role: Role;
  /** Server ms of the event that added the user. */
  joined: number;
  /**
   * Seq of the event that (last) added the user: its join floor (a group shows it nothing below).
   * 0 for members of direct conversations, channel subscribers, and rows older than the floor.
   */
  from: number;
}

/** Read access to a member set (the committed one, or the projection over queued operations). */
export interface MemberView {
  get(user: string): MemberState | undefined;
  readonly size: number;
  entries(): Iterable<[string, MemberState]>;
}

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, moreTypes: false, mapsAsObjects: true });

export function encodeSys(e: SysEvent): Uint8Array {
  return packr.pack(e);
}

/** The event in a stored message body, or null when it is not a well-formed one. */
export function decodeSys(body: Uint8Array): SysEvent | null {
  try {
    const v = unpackr.unpack(body) as SysEvent;
    return typeof v === 'object' && v !== null && typeof v.op === 'string' && typeof v.by === 'string' ? v : null;
  } catch {
    return null;
  }
}

/**
 * The member changes of an event at `seq`: user -> new state, or null when removed. Pure: `current`
 * is read only for a `role` change (which keeps the join time and floor).
 */
export function sysChanges(e: SysEvent, ts: number, seq: number, current: (user: string) => MemberState | undefined): Map<string, MemberState | null> {
  const out = new Map<string, MemberState | null>();
  switch (e.op) {
    case 'create':
      for (const u of e.users ?? []) out.set(u, { role: 'member', joined: ts, from: seq });
      out.set(e.by, { role: 'owner', joined: ts, from: seq });
      break;
    case 'add':
      for (const u of e.users ?? []) out.set(u, { role: e.role ?? 'member', joined: ts, from: seq });
      break;
    case 'remove':
    case 'leave':
      for (const u of e.users ?? []) out.set(u, null);
      break;
    case 'role':
      for (const u of e.users ?? []) {
        const was = current(u);
        out.set(u, { role: e.role ?? 'member', joined: was?.joined ?? ts, from: was?.from ?? seq });
      }
      break;
    case 'meta':
      break;
  }
  return out;
}

/** Applies the member changes of an event at `seq` to `members` (in place). */
export function applySys(members: Map<string, MemberState>, e: SysEvent, ts: number, seq: number): void {
  for (const [u, s] of sysChanges(e, ts, seq, (x) => members.get(x))) {
    if (s === null) members.delete(u);
    else members.set(u, s);
  }
}

/** What an operation does once permitted. */
export type OpPlan =
  | { error: ErrorCode; detail?: string }
  /** `events` in log order (possibly none: a no-op, answered with seq 0); `row`: a channel
   *  subscriber joining or leaving, written as a member row only, never as an event. */
  | { events: SysEvent[]; row?: { user: string; state: MemberState | null } };

export interface PlanInput {
  kind: ConversationKind;
  members: MemberView;
  user: string;
  op: Exclude<ConvOp, { op: 'create' }>;
  /** groups.maxMembers. */
  maxMembers: number;
  now: number;
}

const RANK: Record<Role, number> = { owner: 3, admin: 2, member: 1 };

/**
 * The permission matrix. Checks `op` by `user` against the member set and returns its events or the
 * refusal. Order of checks: direct conversations refuse every membership operation (`forbidden`);
 * a non-member gets `not_member` (except conv.join of a channel); then the role.
 */
export function planOp(p: PlanInput): OpPlan {
  const { kind, members, user, op } = p;
  if (kind === 'direct') return { error: 'forbidden', detail: 'direct conversations have no membership operations' };
  const me = members.get(user);
  if (op.op === 'join') {
    if (kind !== 'channel') return { error: 'forbidden', detail: 'only channels can be joined; a group member must be added' };
    if (me !== undefined) return { events: [] };
    // No floor: a channel's history is public to its subscribers.
    return { events: [], row: { user, state: { role: 'member', joined: p.now, from: 0 } } };
  }
  if (me === undefined) return { error: 'not_member' };
  switch (op.op) {
    case 'add': {
      if (me.role === 'member') return { error: 'forbidden', detail: 'members cannot add members' };
      if (op.role === 'admin' && me.role !== 'owner') return { error: 'forbidden', detail: 'only owners add admins' };
      const fresh = [...new Set(op.users)].filter((u) => members.get(u) === undefined);
      if (fresh.length === 0) return { events: [] };
      if (kind === 'group' && members.size + fresh.length > p.maxMembers) {
        return { error: 'group_full', detail: `a group has at most ${p.maxMembers} members` };
      }
      return { events: [{ op: 'add', by: user, users: fresh, role: op.role }] };
    }
    case 'remove': {
      if (me.role === 'member') return { error: 'forbidden', detail: 'members cannot remove members' };
      const target = members.get(op.user);
      if (target === undefined) return { events: [] };
      if (target.role === 'owner') return { error: 'forbidden', detail: 'an owner cannot be removed (an owner leaves)' };
      if (target.role === 'admin' && me.role !== 'owner') return { error: 'forbidden', detail: 'only owners remove admins' };
      return { events: [{ op: 'remove', by: user, users: [op.user] }] };
    }
    case 'role': {
      if (me.role !== 'owner') return { error: 'forbidden', detail: 'only owners change roles' };
      const target = members.get(op.user);
      if (target === undefined) return { error: 'invalid_field', detail: `${op.user} is not a member` };
      if (target.role === op.role) return { events: [] };
      if (target.role === 'owner' && countRole(members, 'owner') === 1) {
        return { error: 'forbidden', detail: 'the last owner cannot step down (leave instead: the next member is promoted)' };
      }
      return { events: [{ op: 'role', by: user, users: [op.user], role: op.role }] };
    }
    case 'leave': {
      // A channel subscriber's leave is a member row only (subscribers never write to the log).
      if (kind === 'channel' && me.role === 'member') return { events: [], row: { user, state: null } };
      const events: SysEvent[] = [{ op: 'leave', by: user, users: [user] }];
      if (me.role === 'owner' && countRole(members, 'owner') === 1) {
        const heir = successor(members, user);
        if (heir !== null) events.push({ op: 'role', by: user, users: [heir], role: 'owner' });
      }
      return { events };
    }
    case 'meta': {
      if (kind === 'channel' && me.role === 'member') return { error: 'forbidden', detail: 'subscribers cannot change a channel' };
      const e: SysEvent = { op: 'meta', by: user };
      if (op.name !== undefined) e.name = op.name;
      if (op.avatar !== undefined) e.avatar = op.avatar;
      return { events: [e] };
    }
  }
}

function countRole(members: MemberView, role: Role): number {
  let n = 0;
  for (const [, s] of members.entries()) if (s.role === role) n++;
  return n;
}

/** Who becomes owner when the last one leaves: the earliest admin, else the earliest member. */
function successor(members: MemberView, leaving: string): string | null {
  let best: [string, MemberState] | null = null;
  for (const [u, s] of members.entries()) {
    if (u === leaving) continue;
    if (best === null || RANK[s.role] > RANK[best[1].role] || (s.role === best[1].role && (s.joined < best[1].joined || (s.joined === best[1].joined && u < best[0])))) {
      best = [u, s];
    }
  }
  return best?.[0] ?? null;
}

/** Whether `role` may post in a conversation of `kind` (members only; channels: owners and admins). */
export function mayPost(kind: ConversationKind, role: Role | undefined): ErrorCode | null {
  if (role === undefined) return 'not_member';
  if (kind === 'channel' && role === 'member') return 'forbidden';
  return null;
}

/** The conversation meta without the pending marker, with an event's name/avatar applied. */
export function metaAfter(meta: Record<string, string>, e: SysEvent): Record<string, string> {
  const out = { ...meta };
  if (e.name !== undefined) out.name = e.name;
  if (e.avatar !== undefined) out.avatar = e.avatar;
  return out;
}
