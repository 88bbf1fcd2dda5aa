import type { ConversationKind, MessageEntry } from '../protocol/client-frames.js';
import { MAX_SYNC_CURSORS } from '../protocol/client-frames.js';
import type { GapExpiredEvent, Message, MessageSource } from './types.js';

/**
 * Per-conversation receive order (docs/PROTOCOL.md 3.2). Pure logic, no I/O: frames go in, ordered
 * messages and "something needs doing" signals come out through the hooks.
 *
 * For each conversation it keeps `have`, the highest seq such that the device holds every message up
 * to it, and a buffer of messages above `have + 1`. Messages leave the buffer strictly in seq order.
 * `have` is undefined while the device does not know where it stands in a conversation it has not
 * seen in this process (the server's stored cursor decides): messages are buffered until a sync
 * round says where the device's cursor is, or until seq 1 arrives (nothing can precede it).
 *
 * Duplicates are dropped twice over: by seq (at or below `have`, or already buffered: redeliveries)
 * and by message id at emission (a bounded set of recent ids), which also keeps a conversation whose
 * server log was restored from a backup (same ids, seqs from 0 again) from showing messages twice.
 */

/** A message held for ordering; `message` is undefined for this device's own sends (its `sent`). */
export interface Held {
  seq: number;
  mid: string;
  message: Message | undefined;
}

export interface ReceiverHooks {
  deliver(message: Message): void;
  /** `have` of `conv` moved forward: a dack is due. */
  advanced(conv: string): void;
  /** `conv` has a gap (a buffered message above `have + 1`): repair is due. */
  gap(conv: string): void;
  /** A message arrived for a conversation whose cursor is unknown and cannot be inferred: sync. */
  unknown(conv: string): void;
  expired(event: GapExpiredEvent): void;
}

export class ConversationLog {
  have: number | undefined = undefined;
  kind: ConversationKind | undefined;
  readonly buffer = new Map<number, Held>();

  constructor(conv: string) {
    // Direct ids are recognisable; group and channel kinds are learnt from msg and sync.batch.
    this.kind = conv.startsWith('d:') ? 'direct' : undefined;
  }
}

/** Remembers the last `capacity` message ids (oldest forgotten first). */
class RecentIds {
  readonly #ids = new Set<string>();
  constructor(private readonly capacity: number) {}
  has(id: string): boolean {
    return this.#ids.has(id);
  }
  add(id: string): void {
    if (this.#ids.has(id)) return;
    this.#ids.add(id);
    if (this.#ids.size > this.capacity) this.#ids.delete(this.#ids.values().next().value!);
  }
}

export function toMessage(conv: string, kind: ConversationKind | undefined, e: MessageEntry, source: MessageSource): Message {
  const m: Message = { conv, kind, seq: e.seq, mid: e.mid, from: e.from, fdev: e.fdev, body: e.body, ts: e.ts, source };
  if (e.cmid !== undefined) m.cmid = e.cmid;
  if (e.sys !== undefined) m.sys = e.sys;
  if (e.media !== undefined) m.media = e.media;
  return m;
}

export class Receiver {
  readonly #hooks: ReceiverHooks;
  readonly #logs = new Map<string, ConversationLog>();
  readonly #seen: RecentIds;

  constructor(hooks: ReceiverHooks, opts: { recentIds: number; cursors?: Record<string, number> }) {
    this.#hooks = hooks;
    this.#seen = new RecentIds(opts.recentIds);
    for (const [conv, have] of Object.entries(opts.cursors ?? {})) this.log(conv).have = have;
  }

  log(conv: string): ConversationLog {
    let log = this.#logs.get(conv);
    if (log === undefined) {
      log = new ConversationLog(conv);
      this.#logs.set(conv, log);
    }
    return log;
  }

  peek(conv: string): ConversationLog | undefined {
    return this.#logs.get(conv);
  }

  /** Applies the rules of PROTOCOL 3.2 to one incoming message (msg, sync entry, history entry, own sent). */
  accept(conv: string, held: Held, kind?: ConversationKind): void {
    const log = this.log(conv);
    if (kind !== undefined) log.kind = kind;
    if ((log.have !== undefined && held.seq <= log.have) || log.buffer.has(held.seq)) return;
    log.buffer.set(held.seq, held);
    if (log.have === undefined) {
      if (held.seq === 1) this.setBase(conv, 0);
      else this.#hooks.unknown(conv);
      return;
    }
    if (held.seq === log.have + 1) this.#drain(conv, log);
    else this.#hooks.gap(conv);
  }

  /**
   * Sets `have` where the server says the device stands: forward only, except for a conversation
   * whose cursor was unknown. Buffered messages at or below it are dropped; the rest drain.
   */
  setBase(conv: string, have: number): void {
    const log = this.log(conv);
    if (log.have !== undefined && have <= log.have) return;
    log.have = have;
    for (const seq of log.buffer.keys()) if (seq <= have) log.buffer.delete(seq);
    this.#hooks.advanced(conv);
    this.#drain(conv, log);
  }

  /** Messages `have+1 .. retainedFrom-1` are gone for good (retention): report and skip them. */
  expire(conv: string, retainedFrom: number): void {
    const log = this.log(conv);
    const to = retainedFrom - 1;
    if (to < 1 || (log.have !== undefined && log.have >= to)) return;
    this.#hooks.expired({ conv, from: log.have === undefined ? undefined : log.have + 1, to });
    this.setBase(conv, to);
  }

  /** The server's log of `conv` is behind this device's cursor (restored from a backup): start over. */
  reset(conv: string): void {
    const log = this.log(conv);
    log.have = 0;
    log.buffer.clear();
  }

  /** The first missing range of `conv`: seqs `have+1 .. before-1`, or undefined when there is none. */
  missing(conv: string): { have: number; before: number } | undefined {
    const log = this.#logs.get(conv);
    if (log === undefined || log.have === undefined || log.buffer.size === 0) return undefined;
    const before = Math.min(...log.buffer.keys());
    return before > log.have + 1 ? { have: log.have, before } : undefined;
  }

  /** Conversations with an open gap. */
  gaps(): string[] {
    return [...this.#logs.keys()].filter((conv) => this.missing(conv) !== undefined);
  }

  /** Conversations whose cursor is unknown and that hold buffered messages. */
  unknowns(): string[] {
    return [...this.#logs].filter(([, log]) => log.have === undefined && log.buffer.size > 0).map(([conv]) => conv);
  }

  /** `have` of every conversation that has one, for `sync.cursors` (the protocol's cap applies). */
  cursors(): Record<string, number> {
    const out: Record<string, number> = {};
    let n = 0;
    for (const [conv, log] of this.#logs) {
      if (log.have === undefined) continue;
      // Past the cap, the server uses its stored cursors: at most what we dacked, so at worst it
      // resends messages the seq check drops.
      if (n++ === MAX_SYNC_CURSORS) break;
      out[conv] = log.have;
    }
    return out;
  }

  #drain(conv: string, log: ConversationLog): void {
    let moved = false;
    for (let next = log.buffer.get(log.have! + 1); next !== undefined; next = log.buffer.get(log.have! + 1)) {
      log.buffer.delete(next.seq);
      log.have = next.seq;
      moved = true;
      if (next.message !== undefined && !this.#seen.has(next.mid)) {
        if (next.message.kind === undefined) next.message.kind = log.kind;
        this.#seen.add(next.mid);
        this.#hooks.deliver(next.message);
      } else this.#seen.add(next.mid);
    }
    if (moved) this.#hooks.advanced(conv);
    if (log.buffer.size > 0) this.#hooks.gap(conv);
  }
}
