/**
 * Conversations and membership. A member is stored twice, as members[conv, user] and as
 * user_conversations[user, conv], always written in the same transaction so the two never disagree.
 */
import { StoreError } from '../errors.js';
import type { Conversation, ConversationKind, Member, Role, UserConversation } from '../types.js';
import { hasPrefix, PREFIX_END } from './keys.js';
import { clearDeparture, putDeparture } from './departures.js';
import { NEW_LOG_STATE, type ConversationRow, type MemberRow, type UserConversationRow } from './records.js';
import type { EngineContext } from './tables.js';

export interface CreateConversationInput {
  id: string;
  kind: ConversationKind;
  createdBy: string;
  createdAtMs: number;
  meta: Record<string, string>;
  members: { userId: string; role: Role }[];
}

function toConversation(id: string, row: ConversationRow): Conversation {
  return { id, kind: row.kind, createdBy: row.createdBy, createdAtMs: row.createdAtMs, meta: { ...row.meta } };
}

function notFound(id: string): StoreError {
  return new StoreError('store.not_found', `conversation ${id} does not exist`);
}

export async function createConversation(
  ctx: EngineContext,
  input: CreateConversationInput,
): Promise<{ created: boolean; conversation: Conversation }> {
  const { conversations, logs } = ctx.tables;
  return ctx.tables.root.childTransaction(() => {
    const existing = conversations.get(input.id);
    if (existing !== undefined) return { created: false, conversation: toConversation(input.id, existing) };
    const row: ConversationRow = {
      kind: input.kind,
      createdBy: input.createdBy,
      createdAtMs: input.createdAtMs,
      meta: input.meta,
    };
    conversations.put(input.id, row);
    logs.put(input.id, NEW_LOG_STATE);
    for (const m of input.members) writeMember(ctx, input.id, input.kind, m.userId, m.role, input.createdAtMs);
    return { created: true, conversation: toConversation(input.id, row) };
  });
}

export function getConversation(ctx: EngineContext, id: string): Conversation | null {
  const row = ctx.tables.conversations.get(id);
  return row === undefined ? null : toConversation(id, row);
}

export async function updateConversationMeta(ctx: EngineContext, id: string, meta: Record<string, string>): Promise<void> {
  const found = await ctx.tables.root.childTransaction(() => {
    const row = ctx.tables.conversations.get(id);
    if (row === undefined) return false;
    ctx.tables.conversations.put(id, { ...row, meta });
    return true;
  });
  if (!found) throw notFound(id);
}

function writeMember(ctx: EngineContext, conversationId: string, kind: ConversationKind, userId: string, role: Role, joinedAtMs: number, fromSeq = 0): void {
  const member: MemberRow = { role, joinedAtMs, fromSeq };
  const index: UserConversationRow = { kind, role, joinedAtMs, fromSeq };
  ctx.tables.members.put([conversationId, userId], member);
  ctx.tables.userConversations.put([userId, conversationId], index);
  clearDeparture(ctx.tables, userId, conversationId);
}

/**
 * Upsert. A role change keeps the original joinedAtMs: the member joined once, whatever its role
 * became later. `store.not_found` when the conversation does not exist.
 */
export async function putMember(ctx: EngineContext, conversationId: string, userId: string, role: Role, joinedAtMs: number, fromSeq: number): Promise<void> {
  const found = await ctx.tables.root.childTransaction(() => {
    const conv = ctx.tables.conversations.get(conversationId);
    if (conv === undefined) return false;
    const existing = ctx.tables.members.get([conversationId, userId]);
    writeMember(ctx, conversationId, conv.kind, userId, role, existing?.joinedAtMs ?? joinedAtMs, fromSeq);
    return true;
  });
  if (!found) throw notFound(conversationId);
}

export async function removeMember(
  ctx: EngineContext,
  conversationId: string,
  userId: string,
  departure: { fromSeq: number; leftSeq: number } | undefined,
): Promise<void> {
  await ctx.tables.root.childTransaction(() => {
    ctx.tables.members.remove([conversationId, userId]);
    ctx.tables.userConversations.remove([userId, conversationId]);
    const conv = departure === undefined ? undefined : ctx.tables.conversations.get(conversationId);
    if (departure !== undefined && conv !== undefined) putDeparture(ctx, userId, conversationId, { kind: conv.kind, ...departure });
  });
}

export function getMember(ctx: EngineContext, conversationId: string, userId: string): Member | null {
  const row = ctx.tables.members.get([conversationId, userId]);
  return row === undefined ? null : { conversationId, userId, role: row.role, joinedAtMs: row.joinedAtMs, fromSeq: row.fromSeq ?? 0 };
}

/** `limit` omitted means every member: a silent default cap would make fan-out miss members. */
export function listMembers(ctx: EngineContext, conversationId: string, afterUserId: string | undefined, limit: number | undefined): Member[] {
  const out: Member[] = [];
  const range = ctx.tables.members.getRange({
    start: afterUserId === undefined ? [conversationId] : [conversationId, afterUserId],
    exclusiveStart: afterUserId !== undefined,
    end: [conversationId, PREFIX_END],
  });
  for (const { key, value } of range) {
    if (limit !== undefined && out.length >= limit) break;
    if (!hasPrefix(key, [conversationId])) continue;
    out.push({ conversationId, userId: key[1] as string, role: value.role, joinedAtMs: value.joinedAtMs, fromSeq: value.fromSeq ?? 0 });
  }
  return out;
}

/** Ordered by conversation id; each row joined with the conversation's head from one snapshot. */
export function listUserConversations(ctx: EngineContext, userId: string): UserConversation[] {
  const txn = ctx.tables.root.useReadTransaction();
  try {
    const out: UserConversation[] = [];
    const range = ctx.tables.userConversations.getRange({ start: [userId], end: [userId, PREFIX_END], transaction: txn });
    for (const { key, value } of range) {
      if (!hasPrefix(key, [userId])) continue;
      const conversationId = key[1] as string;
      const head = ctx.tables.logs.get(conversationId, { transaction: txn })?.head ?? 0;
      out.push({ conversationId, kind: value.kind, role: value.role, joinedAtMs: value.joinedAtMs, fromSeq: value.fromSeq ?? 0, head });
    }
    return out;
  } finally {
    txn.done();
  }
}
