/**
 * Coalesces the dacks a shard's user actors forward to conversation actors.
 *
 * Every member device of a busy group dacks (the SDK every 100 ms), and each dack used to be one
 * `delivered` message in the conversation actor's mailbox: 1,023 members made 10,000 mailbox
 * messages a second for one actor, which then fell behind on its sends (refused with
 * too_many_inflight when its mailbox filled; bench/RESULTS.md, session 5). Dacks are cumulative per
 * device, so the batcher keeps the highest seq per (conversation, device) and, once per event-loop
 * turn, tells each conversation one `delivered` message carrying all of them (`more`). A device's
 * dack is never dropped, only merged with a later one of the same device; the conversation actor
 * handles each entry as it handled a single dack (checks, cursor write, receipts, error frames).
 */
import type { ConvDelivered, DeviceDack } from './messages.js';
import { dackTally } from './metrics.js';
import type { SessionRef } from './session.js';

export class DackBatcher {
  /** conversation -> device key -> latest dack. */
  private byConv = new Map<string, Map<string, DeviceDack>>();
  private scheduled = false;

  /**
   * @param tell sends a conversation its batch (Router.tell('conv', ...)).
   * @param defer runs the flush after the current turn (setImmediate; tests may flush by hand).
   */
  constructor(
    private readonly tell: (conv: string, msg: ConvDelivered) => void,
    private readonly defer: (fn: () => void) => void = (fn) => void setImmediate(fn),
  ) {}

  add(conv: string, session: SessionRef, seq: number): void {
    let devices = this.byConv.get(conv);
    if (devices === undefined) this.byConv.set(conv, (devices = new Map()));
    const key = `${session.user}\u0000${session.device}`;
    const known = devices.get(key);
    dackTally.forwarded++;
    if (known === undefined) devices.set(key, { session, seq });
    else {
      // The latest session answers errors; the cursor only moves forward anyway.
      known.session = session;
      if (seq > known.seq) known.seq = seq;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      this.defer(() => this.flush());
    }
  }

  /** Sends every batch now. */
  flush(): void {
    this.scheduled = false;
    const byConv = this.byConv;
    if (byConv.size === 0) return;
    this.byConv = new Map();
    for (const [conv, devices] of byConv) {
      let first: DeviceDack | null = null;
      const more: DeviceDack[] = [];
      for (const d of devices.values()) {
        if (first === null) first = d;
        else more.push(d);
      }
      const msg: ConvDelivered = { t: 'delivered', session: first!.session, seq: first!.seq };
      if (more.length > 0) msg.more = more;
      dackTally.batches++;
      this.tell(conv, msg);
    }
  }
}

/** Every dack of a (possibly coalesced) `delivered` message. */
export function dacksOf(m: ConvDelivered): DeviceDack[] {
  return m.more === undefined ? [m] : [m, ...m.more];
}
