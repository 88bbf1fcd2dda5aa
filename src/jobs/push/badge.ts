import type { Store } from '../../store/store.js';

/** Badges larger than this are shown as this (the number is a wake-up hint, not an audit). */
export const MAX_BADGE = 99_999;

/**
 * The user's unread count: over every conversation of the user, head seq minus the user's read
 * cursor (0 when the cursor is at or past the head). Two store reads, no message reads, so the
 * user's own sends after their last read count too, until a client moves the read cursor past them.
 */
export async function unreadCount(store: Store, userId: string): Promise<number> {
  const [convs, reads] = await Promise.all([store.listUserConversations(userId), store.getRead(userId)]);
  const read = new Map(reads.map((r) => [r.conversationId, r.seq]));
  let unread = 0;
  for (const c of convs) unread += Math.max(0, c.head - (read.get(c.conversationId) ?? 0));
  return Math.min(unread, MAX_BADGE);
}
