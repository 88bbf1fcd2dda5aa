/**
 * Member rows and conversation meta as a view of the log, for the conversation actor: writing the
 * rows after a committed batch's events, and the repair an activation runs when a batch left the
 * pending marker (see ConversationActor). Events are absolute for the users they name
 * (conversation-ops.ts), so rows already written by an interrupted batch are harmless to rewrite.
 *
 * Each row write is one atomic store write: a member row with its join floor, or its removal with
 * the user's departure (the seq of the remove/leave event that ended it, which sync.ts uses).
 */
import type { Store } from '../store/store.js';
import type { Conversation } from '../store/types.js';
import { applySys, decodeSys, metaAfter, PENDING_KEY, SYS_DEVICE, sysChanges, type MemberState } from './conversation-ops.js';
import type { ActorLog } from './log.js';
import { convMetrics } from './metrics.js';
import type { SysEvent } from '../protocol/client-conv-frames.js';

const REPAIR_PAGE = 500;

/** A membership ended by an event: the user's devices learn it through sync (sync.ts). */
interface Departed {
  fromSeq: number;
  leftSeq: number;
}

/** The meta without the pending marker. */
export function withoutMarker(meta: Record<string, string>): Record<string, string> {
  if (meta[PENDING_KEY] === undefined) return meta;
  const out = { ...meta };
  delete out[PENDING_KEY];
  return out;
}

/** Writes a member row. Only groups have join floors: channel and direct rows store floor 0. */
export function writeRow(store: Store, conv: Conversation, user: string, s: MemberState | null, departed?: Departed): Promise<void> {
  const floor = (seq: number): number => (conv.kind === 'group' ? seq : 0);
  if (s === null) return store.removeMember(conv.id, user, departed === undefined ? undefined : { fromSeq: floor(departed.fromSeq), leftSeq: departed.leftSeq });
  return store.putMember(conv.id, user, s.role, s.joined, floor(s.from));
}

/**
 * The member rows and meta after a committed batch's events (in seq order, duplicates left out),
 * clearing the marker. Reads `members` (the committed set) without changing it: the actor applies
 * the events itself when the batch completes, after this resolved.
 */
export async function writeBatchRows(
  store: Store,
  conv: Conversation,
  members: ReadonlyMap<string, MemberState>,
  events: { e: SysEvent; ts: number; seq: number }[],
): Promise<void> {
  const next = new Map<string, MemberState | null>();
  const departed = new Map<string, Departed | undefined>();
  const cur = (u: string): MemberState | undefined => (next.has(u) ? (next.get(u) ?? undefined) : members.get(u));
  let meta = withoutMarker(conv.meta);
  for (const { e, ts, seq } of events) {
    for (const [u, s] of sysChanges(e, ts, seq, cur)) {
      const was = cur(u);
      departed.set(u, s === null && was !== undefined ? { fromSeq: was.from, leftSeq: seq } : undefined);
      next.set(u, s);
    }
    meta = metaAfter(meta, e);
  }
  await Promise.all([...next].map(([u, s]) => writeRow(store, conv, u, s, departed.get(u))));
  await store.updateConversationMeta(conv.id, meta);
}

/**
 * A batch's rows were not (all) written: replays the events after `applied` onto `members` (in
 * place), the member rows and the meta, then clears the marker. Returns the conversation with the
 * repaired meta.
 */
export async function repairRows(
  store: Store,
  log: ActorLog,
  conv: Conversation,
  members: Map<string, MemberState>,
  applied: number,
  head: number,
): Promise<Conversation> {
  const changed = new Set<string>();
  // The last departure replayed per user. A remove of a user whose row is already gone has none:
  // its departure was written with the row's removal (one atomic write), so it is in place.
  const departed = new Map<string, Departed | undefined>();
  let meta = withoutMarker(conv.meta);
  let events = 0;
  for (let after = Number.isFinite(applied) ? applied : 0; after < head; ) {
    const page = await store.readForward(conv.id, after, REPAIR_PAGE);
    for (const m of page.messages) {
      if (m.senderDevice !== SYS_DEVICE) continue;
      const e = decodeSys(m.body);
      if (e === null) continue;
      events++;
      for (const [u, next] of sysChanges(e, m.sentAtMs, m.seq, (x) => members.get(x))) {
        changed.add(u);
        const was = members.get(u);
        departed.set(u, next === null && was !== undefined ? { fromSeq: was.from, leftSeq: m.seq } : undefined);
      }
      applySys(members, e, m.sentAtMs, m.seq);
      meta = metaAfter(meta, e);
    }
    const last = page.messages.at(-1)?.seq ?? page.next;
    if (last === null || last === undefined || last <= after) break;
    after = last;
  }
  await Promise.all([...changed].map((u) => writeRow(store, conv, u, members.get(u) ?? null, departed.get(u))));
  await store.updateConversationMeta(conv.id, meta);
  convMetrics.repairs.inc();
  log.warn({ conv: conv.id, events, rows: changed.size }, 'repaired the member rows of events after a pending marker');
  return { ...conv, meta };
}
