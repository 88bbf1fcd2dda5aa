/**
 * Receipts of one conversation, on behalf of its conversation actor: a device's dack (forwarded by
 * its user actor) or read is checked against membership and the head, stored (delivered cursors
 * batched per shard, read cursors at once), then fanned out to the members' user actors.
 */
import type { Store } from '../store/store.js';
import type { Role } from '../store/types.js';
import { errorCodeOf, errorFor } from './answers.js';
import type { CursorBatcher } from './cursor-batcher.js';
import type { ActorLog } from './log.js';
import type { ConvDelivered, ConvRead } from './messages.js';
import type { Router } from './router.js';
import type { SessionRef } from './session.js';

/**
 * Tells the reading session's shard that its `read` of `conv` was handled (stored, refused or
 * answered with an error): the reader's own read receipt, addressed to its own session. The
 * session's shard (shard-actors.ts) takes it as the confirmation and does not forward it: the client
 * applied its read itself, and the protocol sends read receipts to the reader's other devices only.
 * Until it arrives, a `read` routed to another shard counts as in flight there, so a crash of that
 * shard closes the session with 4005 and the client sends its reads again (they are cumulative).
 */
export function confirmRead(router: Router, session: SessionRef, conv: string, seq: number): void {
  router.push(session, { t: 'receipt', conv, kind: 'read', user: session.user, device: session.device, seq });
}

export interface ReceiptDeps {
  store: Store;
  router: Router;
  cursors: CursorBatcher;
  log: ActorLog;
}

type Members = ReadonlyMap<string, Role> | null;

export class ConversationReceipts {
  /** Highest delivered seq forwarded per user in this activation (drops repeated receipts). */
  private readonly deliveredSeen = new Map<string, number>();

  constructor(
    private readonly conv: string,
    private readonly deps: ReceiptDeps,
  ) {}

  /**
   * `inflight` is the size of the commit in flight: a device may already hold a message whose
   * commit the actor has not processed yet (a sync on another shard read it from the store first),
   * so a dack up to `head + inflight` is accepted and clamped to the known head.
   */
  delivered(members: Members, head: number, inflight: number, m: ConvDelivered): void {
    const { router, cursors } = this.deps;
    const { user, device } = m.session;
    if (members === null) return void router.push(m.session, errorFor('not_found'));
    if (!members.has(user)) return void router.push(m.session, errorFor('not_member'));
    if (m.seq > head + inflight) {
      return void router.push(m.session, errorFor('invalid_field', undefined, `dack seq ${m.seq} is beyond the head ${head}`));
    }
    const seq = Math.min(m.seq, head);
    if (seq <= 0) return;
    cursors.add({ userId: user, deviceId: device, conversationId: this.conv, seq });
    if (seq <= (this.deliveredSeen.get(user) ?? 0)) return;
    this.deliveredSeen.set(user, seq);
    for (const member of members.keys()) {
      if (member !== user) router.tell('user', member, { t: 'receipt', conv: this.conv, kind: 'delivered', user, device, seq });
    }
  }

  /** Stores the read cursor, then tells every member's user actor (the reader's own included). */
  read(members: Members, head: number, m: ConvRead): void {
    const { router, store, log } = this.deps;
    const conv = this.conv;
    if (members === null) {
      router.push(m.session, errorFor('not_found'));
      return confirmRead(router, m.session, conv, 0);
    }
    if (!members.has(m.session.user)) {
      router.push(m.session, errorFor('not_member'));
      return confirmRead(router, m.session, conv, 0);
    }
    const seq = Math.min(m.seq, head);
    if (seq <= 0) return confirmRead(router, m.session, conv, 0);
    const to = [...members.keys()];
    const { user, device } = m.session;
    // Not awaited: the write touches no actor state, and sends must not wait behind it.
    store.advanceRead(user, conv, seq).then(
      () => {
        for (const member of to) router.tell('user', member, { t: 'receipt', conv, kind: 'read', user, device, seq });
        confirmRead(router, m.session, conv, seq);
      },
      (err: unknown) => {
        log.warn({ err }, 'storing a read cursor failed');
        router.push(m.session, errorFor(errorCodeOf(err)));
        confirmRead(router, m.session, conv, 0);
      },
    );
  }
}
