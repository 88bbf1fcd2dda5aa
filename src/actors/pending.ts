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

export class DevicePending {
  private readonly byConv = new Map<string, Map<number, PendingDelivery>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds or refreshes the delivery of (conv, seq). A repeat keeps the original first-push time. */
  add(frame: MsgFrame, now: number, retryMs: number): void {
    let conv = this.byConv.get(frame.conv);
    if (conv === undefined) {
      conv = new Map();
      this.byConv.set(frame.conv, conv);
    }
    const known = conv.get(frame.seq);
    if (known !== undefined) {
      known.frame = frame;
      return;
    }
    conv.set(frame.seq, { frame, attempts: 1, firstPushedAt: now, dueAt: now + retryMs });
    this.count++;
    pendingTally.deliveries++;
  }

  /** Drops every entry of `conv` with seq <= `seq`; returns them. */
  ack(conv: string, seq: number): PendingDelivery[] {
    const entries = this.byConv.get(conv);
    if (entries === undefined) return [];
    const out: PendingDelivery[] = [];
    for (const [s, e] of entries) {
      if (s <= seq) {
        entries.delete(s);
        out.push(e);
      }
    }
    if (entries.size === 0) this.byConv.delete(conv);
    this.count -= out.length;
    pendingTally.deliveries -= out.length;
    return out;
  }

  /** Entries due at `now`, in (conversation, seq) order. */
  due(now: number): PendingDelivery[] {
    const out: PendingDelivery[] = [];
    for (const entries of this.byConv.values()) {
      for (const e of entries.values()) if (e.dueAt <= now) out.push(e);
    }
    return out.sort((a, b) => (a.frame.conv === b.frame.conv ? a.frame.seq - b.frame.seq : a.frame.conv < b.frame.conv ? -1 : 1));
  }

  /** Earliest due time, or null when nothing is pending. */
  nextDue(): number | null {
    let min: number | null = null;
    for (const entries of this.byConv.values()) {
      for (const e of entries.values()) if (min === null || e.dueAt < min) min = e.dueAt;
    }
    return min;
  }

  clear(): void {
    pendingTally.deliveries -= this.count;
    this.byConv.clear();
    this.count = 0;
  }
}
