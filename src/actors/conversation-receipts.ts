/**
 * Receipts of one conversation, on behalf of its conversation actor: a device's dack (forwarded by
 * its user actor) or read is checked against membership and the head, stored (delivered cursors
 * batched per shard, read cursors at once), then told to whoever needs it. Per kind:
 *
 * - direct: every receipt goes to the members' user actors (the peer sees ticks; a read also
 *   reaches the reader's other devices).
 * - group: no receipt fan-out per member (that would be O(N^2) per message). A read goes to the
 *   reader's own user actor only (its other devices). The actor tracks each member's highest
 *   delivered (over its devices) and read seq, counted once the cursor is stored, and when the
 *   minimum over the members advances it tells the authors of the messages it newly covers
 *   `receipt {user: '*', all: true}` ("delivered to all", "read by all": the sender's state). The
 *   per-member state answers `receipts` queries.
 *   The tracker is memory only and filled lazily: the first group dack, read or `receipts` query of
 *   an activation loads every member's stored read cursor and delivered cursors (one getRead, one
 *   listDevices and one getDelivered per device, per member) in the background; until it is filled
 *   no "all" receipt is sent (the minimum is unknown) and queries wait for it; when it is filled, the
 *   minimum is announced to every member (possibly again: "all" receipts are cumulative, and the
 *   authors of earlier activations are not known).
 * - channel: a dack stores the cursor only; a read stores the read cursor and goes to the reader's
 *   own user actor. Nothing ever reaches other subscribers.
 */
import type { ConversationKind } from '../protocol/client-frames.js';
import type { ReceiptsStateFrame } from '../protocol/client-conv-frames.js';
import type { Store } from '../store/store.js';
import { errorCodeOf, errorFor } from './answers.js';
import type { CursorBatcher } from './cursor-batcher.js';
import type { ActorLog } from './log.js';
import type { MemberState } from './conversation-ops.js';
import type { ConvDelivered, ConvRead, ConvReceiptsMsg } from './messages.js';
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

type Members = ReadonlyMap<string, MemberState> | null;

/** Members' fills running at once (store reads). */
const FILL_CONCURRENCY = 16;

/**
 * Per-member highest seqs with their minimum. The histogram of values (seq -> members at it) keeps
 * the minimum cheap: members sit at a few distinct seqs (the messages in flight), so finding the
 * next minimum scans those, never the members.
 */
export class MinTracker {
  private readonly values = new Map<string, number>();
  private readonly counts = new Map<number, number>();

  get size(): number {
    return this.values.size;
  }

  get(user: string): number | undefined {
    return this.values.get(user);
  }

  /** Raises `user` to `seq` (adds it when unknown); never lowers. */
  raise(user: string, seq: number): void {
    const old = this.values.get(user);
    if (old !== undefined && old >= seq) return;
    if (old !== undefined) this.dec(old);
    this.values.set(user, seq);
    this.counts.set(seq, (this.counts.get(seq) ?? 0) + 1);
  }

  remove(user: string): void {
    const old = this.values.get(user);
    if (old === undefined) return;
    this.values.delete(user);
    this.dec(old);
  }

  has(user: string): boolean {
    return this.values.has(user);
  }

  /** The lowest value (0 when empty). */
  min(): number {
    let m = Infinity;
    for (const seq of this.counts.keys()) if (seq < m) m = seq;
    return m === Infinity ? 0 : m;
  }

  atLeast(seq: number): string[] {
    const out: string[] = [];
    for (const [u, v] of this.values) if (v >= seq) out.push(u);
    return out.sort();
  }

  private dec(seq: number): void {
    const n = (this.counts.get(seq) ?? 1) - 1;
    if (n <= 0) this.counts.delete(seq);
    else this.counts.set(seq, n);
  }
}

export class ConversationReceipts {
  /** Highest delivered seq forwarded per user in this activation (drops repeated receipts). */
  private readonly deliveredSeen = new Map<string, number>();
  /** Group dacks taken since the last settleDelivered (counted once their cursor writes are stored). */
  private raising: { user: string; seq: number }[] | null = null;
  /** Groups: per-member state, the fill state, and the last "all" seqs announced. */
  private readonly delivered = new MinTracker();
  private readonly read_ = new MinTracker();
  private fill: 'none' | 'running' | 'done' = 'none';
  private fillWaiters: ((ok: boolean) => void)[] = [];
  private deliveredAll = 0;
  private readAll = 0;
  /** Groups: per kind (delivered, read), authors -> their first seq not covered by "all" yet. */
  private readonly waiting: [Map<string, number>, Map<string, number>] = [new Map(), new Map()];
  private readonly authorMax = new Map<string, number>();

  constructor(
    private readonly conv: string,
    private readonly deps: ReceiptDeps,
  ) {}

  /**
   * Counts the group dacks taken by deliveredFrom since the last call once their cursor writes are
   * stored (CursorBatcher.stored: "delivered to all" never goes backwards), then announces what
   * advanced. The conversation actor calls it once per `delivered` message (a coalesced batch of
   * dacks costs one wait, not one per dack).
   */
  settleDelivered(members: Members): void {
    const list = this.raising;
    if (list === null) return;
    this.raising = null;
    void this.deps.cursors.stored().then(() => {
      for (const r of list) this.delivered.raise(r.user, r.seq);
      this.announce(members);
    });
  }

  /**
   * `inflight` is the size of the commit in flight: a device may already hold a message whose
   * commit the actor has not processed yet (a sync on another shard read it from the store first),
   * so a dack up to `head + inflight` is accepted and clamped to the known head.
   */
  deliveredFrom(kind: ConversationKind | null, members: Members, head: number, inflight: number, m: Pick<ConvDelivered, 'session' | 'seq'>): void {
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
    if (kind === 'channel') return;
    if (kind === 'group') {
      this.ensureFilled(members);
      // Counted once stored (settleDelivered): "delivered to all" never goes backwards.
      (this.raising ??= []).push({ user, seq });
      return;
    }
    for (const member of members.keys()) {
      if (member !== user) router.tell('user', member, { t: 'receipt', conv: this.conv, kind: 'delivered', user, device, seq });
    }
  }

  /**
   * Stores the read cursor, then tells the members' user actors (direct: all of them, the reader's
   * own included; group and channel: the reader's own only) and confirms the read.
   */
  readFrom(kind: ConversationKind | null, members: Members, head: number, m: ConvRead): void {
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
    const { user, device } = m.session;
    const to = kind === 'direct' ? [...members.keys()] : [user];
    if (kind === 'group') this.ensureFilled(members);
    // Not awaited: sends must not wait behind the write. A group read counts toward "read by all"
    // once stored, so a later activation (filled from stored cursors) never finds a lower level.
    store.advanceRead(user, conv, seq).then(
      () => {
        if (kind === 'group') {
          this.read_.raise(user, seq);
          this.delivered.raise(user, seq);
          this.announce(members);
        }
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

  /** Answers a `receipts` query (groups; the actor checked kind and membership). */
  query(members: ReadonlyMap<string, MemberState>, head: number, m: ConvReceiptsMsg): void {
    const answer = (ok: boolean): void => {
      if (!ok) return void this.deps.router.push(m.session, errorFor('store_unavailable', m.id, 'loading receipt state failed'));
      const seq = Math.min(m.seq, head);
      const frame: ReceiptsStateFrame = {
        t: 'receipts.state',
        id: m.id,
        conv: this.conv,
        seq: m.seq,
        delivered: seq <= 0 ? [] : this.delivered.atLeast(seq).filter((u) => members.has(u)),
        read: seq <= 0 ? [] : this.read_.atLeast(seq).filter((u) => members.has(u)),
        deliveredAll: this.delivered.min(),
        readAll: this.read_.min(),
      };
      this.deps.router.push(m.session, frame);
    };
    this.ensureFilled(members);
    if (this.fill === 'done') answer(true);
    else this.fillWaiters.push(answer);
  }

  /** The group's members changed (after a commit): track new members, drop removed ones. */
  membersChanged(members: ReadonlyMap<string, MemberState>): void {
    if (this.fill !== 'done') return;
    this.reconcile(members);
    this.announce(members);
  }

  private reconcile(members: ReadonlyMap<string, MemberState>): void {
    for (const u of members.keys()) {
      if (!this.delivered.has(u)) this.delivered.raise(u, 0);
      if (!this.read_.has(u)) this.read_.raise(u, 0);
    }
    for (const t of [this.delivered, this.read_]) {
      for (const u of t.atLeast(0)) if (!members.has(u)) t.remove(u);
    }
  }

  /**
   * Groups: `user` wrote `seq` (a message or an event) in this activation: it is told when "all"
   * covers it. Memory only; a new activation tells every member once at fill instead.
   */
  authored(user: string, seq: number): void {
    this.authorMax.set(user, Math.max(this.authorMax.get(user) ?? 0, seq));
    for (const w of this.waiting) if (!w.has(user)) w.set(user, seq);
  }

  /**
   * When the minimum over members advanced past what was announced: tells the authors of the
   * messages it newly covers (the "delivered to all" / "read by all" state is the sender's), or
   * every member (`everyone`, at fill: what this activation's authors wrote before is unknown).
   */
  private announce(members: Members, everyone = false): void {
    if (this.fill !== 'done' || members === null) return;
    const d = this.delivered.min();
    const r = this.read_.min();
    const { router } = this.deps;
    for (const [i, kind, seq, last] of [[0, 'delivered', d, this.deliveredAll], [1, 'read', r, this.readAll]] as const) {
      if (seq <= last) continue;
      if (kind === 'delivered') this.deliveredAll = seq;
      else this.readAll = seq;
      const waiting = this.waiting[i];
      const to: string[] = [];
      for (const [user, first] of waiting) {
        if (first > seq) continue;
        to.push(user);
        // Its later messages wait for a later level (first uncovered seq, conservatively seq + 1).
        if ((this.authorMax.get(user) ?? 0) > seq) waiting.set(user, seq + 1);
        else waiting.delete(user);
      }
      for (const member of everyone ? members.keys() : to) {
        if (members.has(member)) router.tell('user', member, { t: 'receipt', conv: this.conv, kind, user: '*', device: '', seq, all: true });
      }
    }
  }

  /**
   * `members` is the actor's live committed member map (mutated in place by commits), so the fill
   * reconciles with the members of the moment it finishes.
   */
  private ensureFilled(members: Members): void {
    if (this.fill !== 'none' || members === null) return;
    this.fill = 'running';
    const users = [...members.keys()];
    const { store, log } = this.deps;
    const conv = this.conv;
    const loadOne = async (user: string): Promise<void> => {
      const [reads, devices] = await Promise.all([store.getRead(user), store.listDevices(user)]);
      const read = reads.find((r) => r.conversationId === conv)?.seq ?? 0;
      let delivered = read;
      for (const d of devices) {
        for (const c of await store.getDelivered(user, d.deviceId)) if (c.conversationId === conv && c.seq > delivered) delivered = c.seq;
      }
      this.read_.raise(user, read);
      this.delivered.raise(user, delivered);
    };
    const run = async (): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < users.length) await loadOne(users[next++]!);
      };
      await Promise.all(Array.from({ length: Math.min(FILL_CONCURRENCY, users.length) }, worker));
    };
    run().then(
      () => {
        this.fill = 'done';
        // Members still unknown (never acked) count as 0. The minimum reached at fill time is
        // announced: dacks and reads that arrived during the fill may be what completed it (their
        // cursor writes can even be in what the fill read back), and "all" receipts are cumulative,
        // so re-announcing one a previous activation sent costs one frame per member, nothing more.
        this.reconcile(members);
        this.announce(members, true);
        const waiters = this.fillWaiters;
        this.fillWaiters = [];
        for (const w of waiters) w(true);
      },
      (err: unknown) => {
        log.warn({ err }, 'loading group receipt state failed');
        this.fill = 'none';
        const waiters = this.fillWaiters;
        this.fillWaiters = [];
        for (const w of waiters) w(false);
      },
    );
  }
}
