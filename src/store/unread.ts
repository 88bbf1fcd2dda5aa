import { joinFloor, type CursorEntry, type UserConversation } from './types.js';

/**
 * Unread counts from seqs alone: for each conversation of the user, its head minus the user's read
 * cursor (never negative). No message is read, so it costs the two reads every caller already makes
 * (listUserConversations, getRead), and it counts whatever the log holds after the read cursor: the
 * user's own messages and membership events included. Clients keep their own sends out of the count
 * by moving the read cursor past them (a device that sends has the conversation open). In a group,
 * the seqs below the member's join floor do not count (it never sees them). Used by sync
 * (`synced.unread`, `synced.unreadTotal`) and by the push badge (src/jobs/push/badge.ts).
 */
export interface Unread {
  /** Conversations with something unread -> how many seqs (only entries above 0). */
  perConversation: Record<string, number>;
  total: number;
}

export function unreadOf(convs: readonly UserConversation[], reads: readonly CursorEntry[] | ReadonlyMap<string, number>): Unread {
  const read = reads instanceof Map ? reads : new Map((reads as readonly CursorEntry[]).map((r) => [r.conversationId, r.seq]));
  const perConversation: Record<string, number> = {};
  let total = 0;
  for (const c of convs) {
    const n = Math.max(0, c.head - Math.max(read.get(c.conversationId) ?? 0, joinFloor(c.kind, c.fromSeq) - 1));
    if (n === 0) continue;
    perConversation[c.conversationId] = n;
    total += n;
  }
  return { perConversation, total };
}
