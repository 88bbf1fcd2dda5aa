import type { Store } from '../../store/store.js';
import { unreadOf } from '../../store/unread.js';

/** Badges larger than this are shown as this (the number is a wake-up hint, not an audit). */
export const MAX_BADGE = 99_999;

/**
 * The user's unread count: the total of src/store/unread.ts (over every conversation of the user,
 * head seq minus the user's read cursor), the same number a sync reports as `synced.unreadTotal`.
 * Two store reads, no message reads, so the user's own sends after their last read count too, until
 * a client moves the read cursor past them.
 */
export async function unreadCount(store: Store, userId: string): Promise<number> {
  const [convs, reads] = await Promise.all([store.listUserConversations(userId), store.getRead(userId)]);
  return Math.min(unreadOf(convs, reads).total, MAX_BADGE);
}
