import type { CursorEntry, CursorUpdate } from '../types.js';
import { mapLimit, type Session, type Stmt } from './session.js';
import { invalid, num, requireId, requireSeq, str } from './values.js';

const FANOUT = 16;

/**
 * Delivered and read cursors. Monotonic without LWT: every write carries `USING TIMESTAMP <seq>`, so
 * the highest seq wins however updates are ordered or retried (see cql.ts on custom timestamps; these
 * rows are therefore never deleted, not even by removeDevice).
 */
export class Cursors {
  constructor(private readonly s: Session) {}

  /** One unlogged single-partition batch per (user, device), the partitions written concurrently. */
  async advanceDelivered(updates: CursorUpdate[]): Promise<void> {
    if (!Array.isArray(updates)) throw invalid('updates must be an array');
    const groups = new Map<string, Stmt[]>();
    for (const u of updates) {
      requireId('userId', u.userId);
      requireId('deviceId', u.deviceId);
      requireId('conversationId', u.conversationId);
      requireSeq('seq', u.seq);
      const key = JSON.stringify([u.userId, u.deviceId]);
      const stmt = { query: this.s.cql.writeDelivered, params: [u.seq, u.seq, u.userId, u.deviceId, u.conversationId] };
      groups.set(key, [...(groups.get(key) ?? []), stmt]);
    }
    await mapLimit([...groups.values()], FANOUT, async (stmts) => {
      if (stmts.length === 1) await this.s.write((stmts[0] as Stmt).query, (stmts[0] as Stmt).params);
      else await this.s.batch(stmts);
    });
  }

  async getDelivered(userId: string, deviceId: string): Promise<CursorEntry[]> {
    requireId('userId', userId);
    requireId('deviceId', deviceId);
    return toEntries(await this.s.read(this.s.cql.selectDelivered, [userId, deviceId]));
  }

  async advanceRead(userId: string, conversationId: string, seq: number): Promise<void> {
    requireId('userId', userId);
    requireId('conversationId', conversationId);
    requireSeq('seq', seq);
    await this.s.write(this.s.cql.writeRead, [seq, seq, userId, conversationId]);
  }

  async getRead(userId: string): Promise<CursorEntry[]> {
    requireId('userId', userId);
    return toEntries(await this.s.read(this.s.cql.selectRead, [userId]));
  }
}

function toEntries(rows: { get(name: string): unknown }[]): CursorEntry[] {
  return rows.map((r) => ({ conversationId: str(r.get('conv')), seq: num(r.get('seq')) ?? 0 }));
}
