/**
 * The `embedded` store engine: lmdb on local disk, for single-node deployments and tests. See
 * keys.ts for the table layout, tables.ts for durability settings, writer.ts for fenced appends.
 *
 * Lifecycle: new -> open() -> open -> close() -> closed. Operations outside `open` reject with
 * `store.unavailable`; `close()` first waits for every operation already started (so an append that
 * began before close still commits and resolves), then closes the lmdb environment.
 */
import { StoreError } from '../errors.js';
import { instrument, storeRetentionMetrics, type StoreOp } from '../metrics.js';
import { DEFAULT_DEPARTURES_RETENTION_S, type EmbeddedStoreOptions } from '../options.js';
import type { ConversationWriter, Store } from '../store.js';
import type {
  Conversation,
  ConversationKind,
  CursorEntry,
  CursorUpdate,
  Device,
  Departure,
  Member,
  Page,
  Role,
  UserConversation,
} from '../types.js';
import * as conv from './conversations.js';
import * as cd from './cursors-devices.js';
import { listDepartures, sweepExpiredDepartures } from './departures.js';
import { notOpen, wrapLmdbError } from './lmdb-errors.js';
import * as log from './message-log.js';
import { migrate } from './migrations.js';
import { openTables, type EngineContext, type Tables } from './tables.js';
import * as v from './validate.js';
import { EngineCommitter } from './committer.js';
import { openWriter, type WriterHost } from './writer.js';

type State = 'new' | 'opening' | 'open' | 'closed';

export interface EmbeddedStoreDeps {
  /** Clock for idempotency and departure expiry; tests pass a fake one. */
  now?: () => number;
}

/** Expired departures removed per sweep transaction (a sweep runs transactions until none is left). */
const DEPARTURE_SWEEP_BATCH = 1000;
/** Longest pause between departure sweeps (shorter when the retention is shorter). */
const DEPARTURE_SWEEP_MAX_INTERVAL_MS = 3_600_000;

export class EmbeddedStore implements Store {
  readonly engine = 'embedded' as const;
  private state: State = 'new';
  private ctx: EngineContext | null = null;
  /** Engine-wide group commit (null in `writer` mode); lives as long as `ctx`. */
  private committer: EngineCommitter | null = null;
  private opening: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly now: () => number;
  private readonly departuresRetentionMs: number;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<number> | null = null;
  private readonly wrap = (err: unknown): StoreError => wrapLmdbError(err, this.state !== 'open');
  /** What writers call back into: the same measured, close-tracked path as the store's own methods. */
  private readonly host: WriterHost = { run: (op, fn) => this.run(op, fn) };

  constructor(
    private readonly opts: EmbeddedStoreOptions,
    deps: EmbeddedStoreDeps = {},
  ) {
    if (typeof opts.path !== 'string' || opts.path === '') throw new StoreError('store.invalid', 'store path must be a non-empty string');
    if (!Number.isSafeInteger(opts.bucketSize) || opts.bucketSize < 1) {
      throw new StoreError('store.invalid', `store bucketSize must be a positive integer, got ${String(opts.bucketSize)}`);
    }
    if (opts.groupCommit !== undefined && opts.groupCommit !== 'engine' && opts.groupCommit !== 'writer') {
      throw new StoreError('store.invalid', `store groupCommit must be 'engine' or 'writer', got ${String(opts.groupCommit)}`);
    }
    if (!Number.isFinite(opts.idempotencyTtlMs) || opts.idempotencyTtlMs < 0) {
      throw new StoreError('store.invalid', `store idempotencyTtlMs must be a non-negative number, got ${String(opts.idempotencyTtlMs)}`);
    }
    const retentionS = opts.departuresRetentionS ?? DEFAULT_DEPARTURES_RETENTION_S;
    if (!Number.isSafeInteger(retentionS) || retentionS < 1) {
      throw new StoreError('store.invalid', `store departuresRetentionS must be a positive integer, got ${String(retentionS)}`);
    }
    this.departuresRetentionMs = retentionS * 1000;
    this.now = deps.now ?? Date.now;
  }

  open(): Promise<void> {
    return instrument('embedded', 'open', this.wrap, () => {
      if (this.state === 'open') return Promise.resolve();
      if (this.state === 'closed') return Promise.reject(notOpen());
      this.opening ??= this.doOpen();
      return this.opening;
    });
  }

  private async doOpen(): Promise<void> {
    this.state = 'opening';
    let tables: Tables | undefined;
    try {
      tables = openTables(this.opts.path);
      await migrate(tables, { bucketSize: this.opts.bucketSize, nowMs: this.now(), departuresRetentionMs: this.departuresRetentionMs });
    } catch (err) {
      await tables?.root.close().catch(() => undefined);
      this.opening = null;
      if (this.state === 'opening') this.state = 'new';
      throw err instanceof StoreError ? err : wrapLmdbError(err);
    }
    if (this.state !== 'opening') {
      // close() was called while opening: it is waiting for this promise and owns nothing yet.
      await tables.root.close().catch(() => undefined);
      throw notOpen();
    }
    this.ctx = {
      tables,
      bucketSize: this.opts.bucketSize,
      idempotencyTtlMs: this.opts.idempotencyTtlMs,
      departuresRetentionMs: this.departuresRetentionMs,
      now: this.now,
    };
    this.committer = (this.opts.groupCommit ?? 'engine') === 'engine' ? new EngineCommitter(this.ctx) : null;
    this.state = 'open';
    // Expired departures are already invisible to listDepartures; sweeping only reclaims their space,
    // at open and then periodically (every shard thread of a node sweeps the shared environment; the
    // sweeps are transactions, so they never double-count).
    const everyMs = Math.min(DEPARTURE_SWEEP_MAX_INTERVAL_MS, Math.max(1000, this.departuresRetentionMs));
    this.sweepTimer = setInterval(() => void this.sweepDepartures().catch(() => undefined), everyMs);
    this.sweepTimer.unref();
    void this.sweepDepartures().catch(() => undefined);
  }

  /**
   * Removes every expired departure now; resolves with how many rows went (also counted in
   * ticks_store_departures_pruned_total). Runs on its own at open and periodically; exposed for
   * tests and tools. One sweep at a time per store instance.
   */
  sweepDepartures(): Promise<number> {
    this.sweeping ??= this.run('sweep_departures', async (ctx) => {
      let total = 0;
      for (;;) {
        const now = this.now();
        const { due, removed } = await ctx.tables.root.childTransaction(() => sweepExpiredDepartures(ctx.tables, now, DEPARTURE_SWEEP_BATCH));
        total += removed;
        if (removed > 0) storeRetentionMetrics.departuresPruned.inc(removed);
        if (due < DEPARTURE_SWEEP_BATCH || this.state !== 'open') return total;
      }
    }).finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const opening = this.opening;
    this.state = 'closed';
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (opening) await opening.catch(() => undefined);
    // Operations that started before close finish first, so their commits are never cut off.
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    const ctx = this.ctx;
    this.ctx = null;
    this.committer = null;
    if (ctx) {
      try {
        await ctx.tables.root.close();
      } catch (err) {
        throw wrapLmdbError(err);
      }
    }
  }

  /** Runs one operation against the open engine, measured, with its promise tracked for close(). */
  private run<T>(op: StoreOp, fn: (ctx: EngineContext) => T | Promise<T>): Promise<T> {
    return instrument('embedded', op, this.wrap, async () => {
      const ctx = this.ctx;
      if (this.state !== 'open' || ctx === null) throw notOpen();
      const p = (async () => fn(ctx))();
      this.inflight.add(p);
      try {
        return await p;
      } finally {
        this.inflight.delete(p);
      }
    });
  }

  // ---- conversations and membership -------------------------------------------------------------

  createConversation(input: {
    id: string;
    kind: ConversationKind;
    createdBy: string;
    createdAtMs: number;
    meta?: Record<string, string>;
    members: { userId: string; role: Role }[];
  }): Promise<{ created: boolean; conversation: Conversation }> {
    return this.run('create_conversation', (ctx) => {
      if (!Array.isArray(input.members)) throw new StoreError('store.invalid', 'members must be an array');
      return conv.createConversation(ctx, {
        id: v.checkId('conversationId', input.id),
        kind: v.checkKind(input.kind),
        createdBy: v.checkId('createdBy', input.createdBy),
        createdAtMs: v.checkTime('createdAtMs', input.createdAtMs),
        meta: v.checkMeta(input.meta ?? {}),
        members: input.members.map((m) => ({ userId: v.checkId('userId', m.userId), role: v.checkRole(m.role) })),
      });
    });
  }

  getConversation(id: string): Promise<Conversation | null> {
    return this.run('get_conversation', (ctx) => conv.getConversation(ctx, v.checkId('conversationId', id)));
  }

  updateConversationMeta(id: string, meta: Record<string, string>): Promise<void> {
    return this.run('update_conversation_meta', (ctx) =>
      conv.updateConversationMeta(ctx, v.checkId('conversationId', id), v.checkMeta(meta)),
    );
  }

  putMember(conversationId: string, userId: string, role: Role, joinedAtMs: number, fromSeq = 0): Promise<void> {
    return this.run('put_member', (ctx) =>
      conv.putMember(
        ctx,
        v.checkId('conversationId', conversationId),
        v.checkId('userId', userId),
        v.checkRole(role),
        v.checkTime('joinedAtMs', joinedAtMs),
        v.checkSeq('fromSeq', fromSeq),
      ),
    );
  }

  removeMember(conversationId: string, userId: string, departure?: { fromSeq: number; leftSeq: number }): Promise<void> {
    return this.run('remove_member', (ctx) =>
      conv.removeMember(
        ctx,
        v.checkId('conversationId', conversationId),
        v.checkId('userId', userId),
        departure === undefined ? undefined : { fromSeq: v.checkSeq('fromSeq', departure.fromSeq), leftSeq: v.checkSeq('leftSeq', departure.leftSeq) },
      ),
    );
  }

  listDepartures(userId: string): Promise<Departure[]> {
    return this.run('list_departures', (ctx) => listDepartures(ctx, v.checkId('userId', userId)));
  }

  getMember(conversationId: string, userId: string): Promise<Member | null> {
    return this.run('get_member', (ctx) =>
      conv.getMember(ctx, v.checkId('conversationId', conversationId), v.checkId('userId', userId)),
    );
  }

  listMembers(conversationId: string, opts: { afterUserId?: string; limit?: number } = {}): Promise<Member[]> {
    return this.run('list_members', (ctx) =>
      conv.listMembers(
        ctx,
        v.checkId('conversationId', conversationId),
        opts.afterUserId === undefined ? undefined : v.checkId('afterUserId', opts.afterUserId),
        opts.limit === undefined ? undefined : v.checkLimit('limit', opts.limit),
      ),
    );
  }

  listUserConversations(userId: string): Promise<UserConversation[]> {
    return this.run('list_user_conversations', (ctx) => conv.listUserConversations(ctx, v.checkId('userId', userId)));
  }

  // ---- message log ------------------------------------------------------------------------------

  openWriter(conversationId: string, epoch: number): Promise<ConversationWriter> {
    return this.run('open_writer', (ctx) =>
      openWriter(ctx, this.host, v.checkId('conversationId', conversationId), v.checkSeq('epoch', epoch), this.committer),
    );
  }

  readForward(conversationId: string, afterSeq: number, limit: number): Promise<Page> {
    return this.run('read_forward', (ctx) =>
      log.readForward(ctx, v.checkId('conversationId', conversationId), v.checkSeq('afterSeq', afterSeq), v.checkLimit('limit', limit)),
    );
  }

  readBackward(conversationId: string, beforeSeq: number, limit: number): Promise<Page> {
    return this.run('read_backward', (ctx) =>
      log.readBackward(ctx, v.checkId('conversationId', conversationId), v.checkSeqBound('beforeSeq', beforeSeq), v.checkLimit('limit', limit)),
    );
  }

  head(conversationId: string): Promise<number> {
    return this.run('head', (ctx) => log.readLogState(ctx, v.checkId('conversationId', conversationId)).head);
  }

  trimExpired(conversationId: string, olderThanMs: number): Promise<number> {
    return this.run('trim_expired', (ctx) =>
      log.trimExpired(ctx, v.checkId('conversationId', conversationId), v.checkTime('olderThanMs', olderThanMs)),
    );
  }

  retainedFrom(conversationId: string): Promise<number> {
    return this.run('retained_from', (ctx) => log.readLogState(ctx, v.checkId('conversationId', conversationId)).retainedFrom);
  }

  // ---- cursors ----------------------------------------------------------------------------------

  advanceDelivered(updates: CursorUpdate[]): Promise<void> {
    return this.run('advance_delivered', (ctx) => cd.advanceDelivered(ctx, v.checkCursorUpdates(updates)));
  }

  getDelivered(userId: string, deviceId: string): Promise<CursorEntry[]> {
    return this.run('get_delivered', (ctx) => cd.getDelivered(ctx, v.checkId('userId', userId), v.checkId('deviceId', deviceId)));
  }

  advanceRead(userId: string, conversationId: string, seq: number): Promise<void> {
    return this.run('advance_read', (ctx) =>
      cd.advanceRead(ctx, v.checkId('userId', userId), v.checkId('conversationId', conversationId), v.checkSeq('seq', seq)),
    );
  }

  getRead(userId: string): Promise<CursorEntry[]> {
    return this.run('get_read', (ctx) => cd.getRead(ctx, v.checkId('userId', userId)));
  }

  // ---- devices ----------------------------------------------------------------------------------

  putDevice(device: Omit<Device, 'pushProvider' | 'pushToken'>): Promise<void> {
    return this.run('put_device', (ctx) =>
      cd.putDevice(ctx, {
        userId: v.checkId('userId', device.userId),
        deviceId: v.checkId('deviceId', device.deviceId),
        platform: v.checkPlatform(device.platform),
        createdAtMs: v.checkTime('createdAtMs', device.createdAtMs),
      }),
    );
  }

  setPushToken(userId: string, deviceId: string, provider: Device['pushProvider'], token: string | null): Promise<void> {
    return this.run('set_push_token', (ctx) => {
      if (token !== null && (typeof token !== 'string' || token === '')) {
        throw new StoreError('store.invalid', 'push token must be a non-empty string or null');
      }
      if (token !== null && provider === null) throw new StoreError('store.invalid', 'a push token needs a provider');
      return cd.setPushToken(ctx, v.checkId('userId', userId), v.checkId('deviceId', deviceId), v.checkProvider(provider), token);
    });
  }

  listDevices(userId: string): Promise<Device[]> {
    return this.run('list_devices', (ctx) => cd.listDevices(ctx, v.checkId('userId', userId)));
  }

  removeDevice(userId: string, deviceId: string): Promise<void> {
    return this.run('remove_device', (ctx) => cd.removeDevice(ctx, v.checkId('userId', userId), v.checkId('deviceId', deviceId)));
  }
}
