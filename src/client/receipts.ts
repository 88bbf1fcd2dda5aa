import type { ReceiptKind } from '../protocol/client-frames.js';

/**
 * Receipt state per conversation (docs/PROTOCOL.md 3.1): how far each other user has received and
 * read, and how far this user has read (shared by all their devices). Cursors only move forward,
 * whatever order updates arrive in. Pure state, no I/O.
 */

export interface PeerProgress {
  delivered: number;
  read: number;
}

export interface ConversationReceipts extends PeerProgress {
  /** Per other user; `delivered`/`read` above are the highest over them (for a direct conversation: the peer's). */
  users: Record<string, PeerProgress>;
}

export class ReceiptBook {
  readonly #peers = new Map<string, Map<string, PeerProgress>>();
  readonly #ownReads = new Map<string, number>();

  /**
   * Records that `user` received or read `conv` up to `seq`. Returns false when it says nothing new.
   * A read implies delivered (a user cannot read what no device of theirs holds).
   */
  apply(conv: string, kind: ReceiptKind, user: string, seq: number, me: string | undefined): boolean {
    if (user === me) {
      if (kind !== 'read') return false; // our own devices' delivered receipts carry nothing for the UI
      if (seq <= (this.#ownReads.get(conv) ?? 0)) return false;
      this.#ownReads.set(conv, seq);
      return true;
    }
    let users = this.#peers.get(conv);
    if (users === undefined) {
      users = new Map();
      this.#peers.set(conv, users);
    }
    let p = users.get(user);
    if (p === undefined) {
      p = { delivered: 0, read: 0 };
      users.set(user, p);
    }
    const before = kind === 'read' ? p.read : p.delivered;
    if (seq <= before) return false;
    if (kind === 'read') {
      p.read = seq;
      p.delivered = Math.max(p.delivered, seq);
    } else p.delivered = seq;
    return true;
  }

  /** This user's read cursor in `conv` (0 when unknown). */
  ownRead(conv: string): number {
    return this.#ownReads.get(conv) ?? 0;
  }

  /** How far the other users of `conv` have received and read. */
  peers(conv: string): ConversationReceipts {
    const out: ConversationReceipts = { delivered: 0, read: 0, users: {} };
    for (const [user, p] of this.#peers.get(conv) ?? []) {
      out.users[user] = { ...p };
      out.delivered = Math.max(out.delivered, p.delivered);
      out.read = Math.max(out.read, p.read);
    }
    return out;
  }
}
