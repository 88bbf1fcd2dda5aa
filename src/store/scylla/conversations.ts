import { StoreError } from '../errors.js';
import {
  CONVERSATION_KINDS,
  ROLES,
  type Conversation,
  type ConversationKind,
  type Departure,
  type Member,
  type Role,
  type UserConversation,
} from '../types.js';
import { DEFAULT_DEPARTURES_RETENTION_S } from '../options.js';
import { mapLimit, type Row, type Session, type Stmt } from './session.js';
import { invalid, ms, num, numOr, requireId, requireLimit, requireMs, requireSeq, str } from './values.js';

const MEMBER_BATCH = 100;
const FANOUT = 16;
const DEFAULT_MEMBER_PAGE = 100;

export interface CreateConversationInput {
  id: string;
  kind: ConversationKind;
  createdBy: string;
  createdAtMs: number;
  meta?: Record<string, string>;
  members: { userId: string; role: Role }[];
}

/** Conversations, membership and the per-user conversation list. */
export class Conversations {
  /** TTL of a departure row (retention.departuresS). */
  private readonly departureTtlS: number;

  constructor(private readonly s: Session) {
    this.departureTtlS = s.opts.departuresRetentionS ?? DEFAULT_DEPARTURES_RETENTION_S;
    if (!Number.isSafeInteger(this.departureTtlS) || this.departureTtlS < 1) {
      throw invalid(`departuresRetentionS must be a positive integer, got ${String(this.departureTtlS)}`);
    }
  }

  /**
   * `INSERT .. IF NOT EXISTS` decides who created it. Members are written after, and the row is then
   * marked `members_ready`; a retry of the same creation (same kind, creator and time) that finds the
   * mark missing finishes the members, so a crash in between loses nothing. Any other creation that
   * finds the conversation changes nothing.
   */
  async create(input: CreateConversationInput): Promise<{ created: boolean; conversation: Conversation }> {
    validateCreate(input);
    const meta = input.meta ?? {};
    const rs = await this.s.lwt(this.s.cql.insertConversation, [
      input.id, input.kind, input.createdBy, new Date(input.createdAtMs), meta,
    ]);
    if (rs.wasApplied()) {
      const conversation = { id: input.id, kind: input.kind, createdBy: input.createdBy, createdAtMs: input.createdAtMs, meta: { ...meta } };
      await this.writeInitialMembers(conversation, input.members);
      return { created: true, conversation };
    }
    const row = await this.s.readOne(this.s.cql.selectConversation, [input.id], true);
    if (!row) throw new StoreError('store.internal', `conversation ${input.id} exists but could not be read`);
    const existing = toConversation(row);
    const sameCreation =
      existing.kind === input.kind && existing.createdBy === input.createdBy && existing.createdAtMs === input.createdAtMs;
    if (row.get('members_ready') !== true && sameCreation) await this.writeInitialMembers(existing, input.members);
    return { created: false, conversation: existing };
  }

  async get(id: string): Promise<Conversation | null> {
    requireId('conversationId', id);
    const row = await this.s.readOne(this.s.cql.selectConversation, [id]);
    return row ? toConversation(row) : null;
  }

  async updateMeta(id: string, meta: Record<string, string>): Promise<void> {
    requireId('conversationId', id);
    validateMeta(meta);
    const rs = await this.s.lwt(this.s.cql.updateMeta, [meta, id]);
    if (!rs.wasApplied()) throw notFound(id);
  }

  /** Member row, list entry and the departure's removal in one logged batch: all or none. */
  async putMember(conv: string, userId: string, role: Role, joinedAtMs: number, fromSeq: number): Promise<void> {
    requireId('conversationId', conv);
    requireId('userId', userId);
    validateRole(role);
    requireMs('joinedAtMs', joinedAtMs);
    requireSeq('fromSeq', fromSeq);
    const c = await this.get(conv);
    if (!c) throw notFound(conv);
    await this.s.batch([...this.memberStmts(c, userId, role, joinedAtMs, fromSeq), { query: this.s.cql.deleteDeparture, params: [userId, conv] }], true);
  }

  /** Member row, list entry and (with `departure`) the departure row in one logged batch. */
  async removeMember(conv: string, userId: string, departure?: { fromSeq: number; leftSeq: number }): Promise<void> {
    requireId('conversationId', conv);
    requireId('userId', userId);
    const stmts: Stmt[] = [
      { query: this.s.cql.deleteMember, params: [conv, userId] },
      { query: this.s.cql.deleteUserConversation, params: [userId, conv] },
    ];
    if (departure !== undefined) {
      requireSeq('fromSeq', departure.fromSeq);
      requireSeq('leftSeq', departure.leftSeq);
      const c = await this.get(conv);
      if (c) stmts.push({ query: this.s.cql.insertDeparture, params: [userId, conv, c.kind, departure.fromSeq, departure.leftSeq, this.departureTtlS] });
    }
    await this.s.batch(stmts, true);
  }

  /**
   * Rows expire by their TTL. A row written before departures had one (no TTL) gets it here, counted
   * from the row's own write time: rewritten with the rest of the retention, or deleted (and left out)
   * when the retention has passed. Both use the row's write timestamp, so a concurrent re-add or a
   * newer departure always wins over them. They are housekeeping: a failed one does not fail the
   * read (the next read tries again).
   */
  async listDepartures(userId: string): Promise<Departure[]> {
    requireId('userId', userId);
    const rows = await this.s.read(this.s.cql.listDepartures, [userId]);
    const out: Departure[] = [];
    const legacy: Promise<unknown>[] = [];
    for (const row of rows) {
      const d: Departure = {
        conversationId: str(row.get('conv')),
        kind: str(row.get('kind')) as ConversationKind,
        fromSeq: numOr(row.get('from_seq'), 0),
        leftSeq: numOr(row.get('left_seq'), 0),
      };
      const writtenAtUs = num(row.get('left_at'));
      if (num(row.get('left_ttl')) === null && writtenAtUs !== null) {
        const leftS = this.departureTtlS - Math.floor((Date.now() - writtenAtUs / 1000) / 1000);
        if (leftS < 1) {
          legacy.push(this.s.write(this.s.cql.deleteLegacyDeparture, [writtenAtUs, userId, d.conversationId]));
          continue;
        }
        legacy.push(this.s.write(this.s.cql.expireLegacyDeparture, [userId, d.conversationId, d.kind, d.fromSeq, d.leftSeq, leftS, writtenAtUs]));
      }
      out.push(d);
    }
    await Promise.all(legacy.map((p) => p.catch(() => undefined)));
    return out;
  }

  async getMember(conv: string, userId: string): Promise<Member | null> {
    requireId('conversationId', conv);
    requireId('userId', userId);
    const row = await this.s.readOne(this.s.cql.selectMember, [conv, userId]);
    return row ? toMember(row) : null;
  }

  async listMembers(conv: string, opts: { afterUserId?: string; limit?: number } = {}): Promise<Member[]> {
    requireId('conversationId', conv);
    const limit = requireLimit(opts.limit ?? DEFAULT_MEMBER_PAGE);
    const rows = await this.s.read(this.s.cql.listMembers, [conv, opts.afterUserId ?? '', limit]);
    return rows.map(toMember);
  }

  /**
   * The user's list joined with each conversation's head hint, read per conversation (single-partition
   * reads spread over the cluster by the token-aware driver; ScyllaDB advises against large
   * partition-key IN lists). The hint is raised before an append resolves, so it covers every
   * acknowledged message; it can lag only messages whose append never returned, until the next append
   * or openWriter of that conversation. `head()` is the fully authoritative (and dearer) read.
   */
  async listForUser(userId: string): Promise<UserConversation[]> {
    requireId('userId', userId);
    const rows = await this.s.read(this.s.cql.listUserConversations, [userId]);
    return mapLimit(rows, FANOUT, async (row) => {
      const conv = str(row.get('conv'));
      const hint = await this.s.readOne(this.s.cql.selectHead, [conv]);
      return {
        conversationId: conv,
        kind: str(row.get('kind')) as ConversationKind,
        role: str(row.get('role')) as Role,
        joinedAtMs: ms(row.get('joined_at')),
        fromSeq: numOr(row.get('from_seq'), 0),
        head: numOr(hint?.get('head'), 0),
      };
    });
  }

  private async writeInitialMembers(c: Conversation, members: { userId: string; role: Role }[]): Promise<void> {
    const byUser = new Map(members.map((m) => [m.userId, m.role]));
    const memberRows: Stmt[] = [...byUser].map(([userId, role]) => ({
      query: this.s.cql.insertMember,
      params: [c.id, userId, role, new Date(c.createdAtMs), 0],
    }));
    const batches: Stmt[][] = [];
    for (let i = 0; i < memberRows.length; i += MEMBER_BATCH) batches.push(memberRows.slice(i, i + MEMBER_BATCH));
    await mapLimit(batches, 4, (b) => this.s.batch(b)); // one partition each
    await mapLimit([...byUser], FANOUT, ([userId, role]) =>
      this.s.write(this.s.cql.insertUserConversation, [userId, c.id, c.kind, role, new Date(c.createdAtMs), 0]),
    );
    await this.s.write(this.s.cql.markMembersReady, [c.id]);
  }

  private memberStmts(c: Conversation, userId: string, role: Role, joinedAtMs: number, fromSeq: number): Stmt[] {
    const at = new Date(joinedAtMs);
    return [
      { query: this.s.cql.insertMember, params: [c.id, userId, role, at, fromSeq] },
      { query: this.s.cql.insertUserConversation, params: [userId, c.id, c.kind, role, at, fromSeq] },
    ];
  }
}

function toConversation(row: Row): Conversation {
  const meta = (row.get('meta') ?? {}) as Record<string, string>;
  return {
    id: str(row.get('id')),
    kind: str(row.get('kind')) as ConversationKind,
    createdBy: str(row.get('created_by')),
    createdAtMs: ms(row.get('created_at')),
    meta: { ...meta },
  };
}

function toMember(row: Row): Member {
  return {
    conversationId: str(row.get('conv')),
    userId: str(row.get('user_id')),
    role: str(row.get('role')) as Role,
    joinedAtMs: ms(row.get('joined_at')),
    fromSeq: numOr(row.get('from_seq'), 0),
  };
}

function notFound(id: string): StoreError {
  return new StoreError('store.not_found', `conversation ${id} does not exist`);
}

function validateRole(role: unknown): void {
  if (!ROLES.includes(role as Role)) throw invalid(`role must be one of ${ROLES.join(', ')}, got ${String(role)}`);
}

function validateMeta(meta: unknown): void {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw invalid('meta must be an object of strings');
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') throw invalid(`meta.${k} must be a string`);
  }
}

function validateCreate(input: CreateConversationInput): void {
  requireId('id', input.id);
  if (!CONVERSATION_KINDS.includes(input.kind)) throw invalid(`kind must be one of ${CONVERSATION_KINDS.join(', ')}`);
  requireId('createdBy', input.createdBy);
  requireMs('createdAtMs', input.createdAtMs);
  if (input.meta !== undefined) validateMeta(input.meta);
  if (!Array.isArray(input.members)) throw invalid('members must be an array');
  for (const m of input.members) {
    requireId('members[].userId', m.userId);
    validateRole(m.role);
  }
}
