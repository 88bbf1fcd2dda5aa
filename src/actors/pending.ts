/**
 * Deliveries pushed to one device and not yet acknowledged, with their retry schedule. A dack is
 * cumulative per conversation, so entries are grouped by conversation.
 */
import type { MsgFrame } from '../protocol/client-frames.js';
import { pendingTally } from './metrics.js';

export interface PendingDelivery {
  frame: MsgFrame;
  /** Pushes so far (1 after the first push). */
  attempts: number;
  firstPushedAt: number;
  dueAt: number;
}

/**
 * Entries are kept per conversation in an array sorted by seq: deliveries arrive in seq order, so an
 * add is an append and a cumulative dack drops a prefix (no Map entry per delivery: a group fan-out
 * adds one per member device per message).
 */
export class DevicePending {
  private readonly byConv = new Map<string, PendingDelivery[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds or refreshes the delivery of (conv, seq). A repeat keeps the original first-push time. */
  add(frame: MsgFrame, now: number, retryMs: number): void {
    let list = this.byConv.get(frame.conv);
    if (list === undefined) {
      list = [];
      this.byConv.set(frame.conv, list);
    }
    const seq = frame.seq;
    // Where it goes: after the last entry with a lower seq (the common case is the end).
    let i = list.length;
    while (i > 0 && list[i - 1]!.frame.seq >= seq) i--;
    const known = list[i];
    if (known !== undefined && known.frame.seq === seq) {
      known.frame = frame;
      return;
    }
    const entry: PendingDelivery = { frame, attempts: 1, firstPushedAt: now, dueAt: now + retryMs };
    if (i === list.length) list.push(entry);
    else list.splice(i, 0, entry);
    this.count++;
    pendingTally.deliveries++;
  }

  /** Drops every entry of `conv` with seq <= `seq`; returns them. */
  ack(conv: string, seq: number): PendingDelivery[] {
    const list = this.byConv.get(conv);
    if (list === undefined) return [];
    let n = 0;
    while (n < list.length && list[n]!.frame.seq <= seq) n++;
    if (n === 0) return [];
    const all = n === list.length;
    const out = all ? list : list.splice(0, n);
    if (all) this.byConv.delete(conv);
    this.count -= n;
    pendingTally.deliveries -= n;
    return out;
  }

  /** Entries due at `now`, in (conversation, seq) order. */
  due(now: number): PendingDelivery[] {
    const out: PendingDelivery[] = [];
    const convs = [...this.byConv.keys()].sort();
    for (const conv of convs) for (const e of this.byConv.get(conv)!) if (e.dueAt <= now) out.push(e);
    return out;
  }

  /** Earliest due time, or null when nothing is pending. */
  nextDue(): number | null {
    let min: number | null = null;
    for (const list of this.byConv.values()) {
      for (const e of list) if (min === null || e.dueAt < min) min = e.dueAt;
    }
    return min;
  }

  clear(): void {
    pendingTally.deliveries -= this.count;
    this.byConv.clear();
    this.count = 0;
  }
}
