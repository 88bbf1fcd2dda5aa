/**
 * Departures of the embedded engine: departures[user, conv] (DepartureRow) plus the index
 * departures_expiry[expiresAtMs, user, conv] that the sweep walks, oldest expiry first.
 *
 * Retention: a row is written with expiresAtMs = now + departuresRetentionMs (fixed when written,
 * like the scylla engine's TTL). From then on `list` ignores it (so the answer does not depend on
 * when the sweep last ran) and `sweep` removes it. The functions that write run inside the caller's
 * transaction; the row and its index entry always change together.
 */
import { hasPrefix, PREFIX_END } from './keys.js';
import type { DepartureRow } from './records.js';
import type { EngineContext, Tables } from './tables.js';
import type { ConversationKind, Departure } from '../types.js';

function expiryKey(expiresAtMs: number, userId: string, conversationId: string): [number, string, string] {
  return [expiresAtMs, userId, conversationId];
}

/** Removes the user's departure from the conversation (a re-add), with its index entry. */
export function clearDeparture(tables: Tables, userId: string, conversationId: string): void {
  const row = tables.departures.get([userId, conversationId]);
  if (row === undefined) return;
  tables.departures.remove([userId, conversationId]);
  if (row.expiresAtMs !== undefined) tables.departuresExpiry.remove(expiryKey(row.expiresAtMs, userId, conversationId));
}

/** Records (or replaces) the user's departure from the conversation, kept for the retention. */
export function putDeparture(
  ctx: EngineContext,
  userId: string,
  conversationId: string,
  d: { kind: ConversationKind; fromSeq: number; leftSeq: number },
): void {
  clearDeparture(ctx.tables, userId, conversationId);
  const expiresAtMs = ctx.now() + ctx.departuresRetentionMs;
  const row: DepartureRow = { kind: d.kind, fromSeq: d.fromSeq, leftSeq: d.leftSeq, expiresAtMs };
  ctx.tables.departures.put([userId, conversationId], row);
  ctx.tables.departuresExpiry.put(expiryKey(expiresAtMs, userId, conversationId), 1);
}

/** The user's departures that have not expired (expired rows not yet swept are skipped). */
export function listDepartures(ctx: EngineContext, userId: string): Departure[] {
  const now = ctx.now();
  const out: Departure[] = [];
  for (const { key, value } of ctx.tables.departures.getRange({ start: [userId], end: [userId, PREFIX_END] })) {
    if (!hasPrefix(key, [userId])) continue;
    if (value.expiresAtMs !== undefined && value.expiresAtMs <= now) continue;
    out.push({ conversationId: key[1] as string, kind: value.kind, fromSeq: value.fromSeq, leftSeq: value.leftSeq });
  }
  return out;
}

/**
 * Removes up to `max` expired departures, oldest expiry first: `due` index entries looked at (fewer
 * than `max`: nothing more is due), `removed` rows.
 * Runs inside a write transaction, so shard threads sweeping the same environment at once never
 * count a row twice. An index entry whose row was replaced (a later departure, a re-add) only goes.
 */
export function sweepExpiredDepartures(tables: Tables, now: number, max: number): { due: number; removed: number } {
  // Collect first: the cursor must not walk keys this loop is deleting.
  const due = [...tables.departuresExpiry.getKeys({ end: [now, PREFIX_END], limit: max })];
  let removed = 0;
  for (const key of due) {
    tables.departuresExpiry.remove(key);
    if (!Array.isArray(key) || key.length !== 3) continue;
    const [expiresAtMs, userId, conversationId] = key as [number, string, string];
    if (tables.departures.get([userId, conversationId])?.expiresAtMs === expiresAtMs) {
      tables.departures.remove([userId, conversationId]);
      removed++;
    }
  }
  return { due: due.length, removed };
}

/**
 * Migration 2: rows written before retention existed get an expiry `retentionMs` from the
 * migration (their departure time was not recorded, so the whole window starts now).
 */
export function indexLegacyDepartures(tables: Tables, nowMs: number, retentionMs: number): number {
  const legacy: [string, string, DepartureRow][] = [];
  for (const { key, value } of tables.departures.getRange({})) {
    if (value.expiresAtMs === undefined && Array.isArray(key) && key.length === 2) legacy.push([key[0] as string, key[1] as string, value]);
  }
  const expiresAtMs = nowMs + retentionMs;
  for (const [userId, conversationId, row] of legacy) {
    tables.departures.put([userId, conversationId], { ...row, expiresAtMs });
    tables.departuresExpiry.put(expiryKey(expiresAtMs, userId, conversationId), 1);
  }
  return legacy.length;
}
