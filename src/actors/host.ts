/**
 * The actor host of one shard thread: activation on first message, one message at a time per actor,
 * passivation when idle, hand-over when an activation ends with work still queued, and drain.
 *
 * Lifecycle of one activation: created on the first `tell` -> `activate()` loads state while
 * messages wait in the (paused) mailbox -> active -> ends by idle passivation, by the actor's own
 * `ctx.deactivate()` (e.g. it lost its store fencing), or by drain. External messages still queued
 * when an activation ends are handed to a fresh activation (never dropped); messages the actor
 * posted to itself end with it.
 */
import type { ActorKind } from './address.js';
import type { Clock, TimerHandle } from './clock.js';
import type { ActorLog } from './log.js';
import { Mailbox, type Lane, type MailboxEntry } from './mailbox.js';
import { actorMetrics } from './metrics.js';

export type RejectReason = 'mailbox_full' | 'activation_failed' | 'shutting_down';

export interface ActorContext<M> {
  readonly kind: ActorKind;
  readonly key: string;
  /** Posts to this activation's system lane; a no-op once the activation has ended. */
  self(msg: M): void;
  /** Ends this activation after the current message; queued external messages go to a new one. */
  deactivate(reason: string): void;
}

export interface Actor<M> {
  /** Loads state. Messages wait meanwhile. A rejection fails every queued message (`reject`). */
  activate(): Promise<void>;
  receive(msg: M): void | Promise<void>;
  /** Work in flight that drain and passivation must wait for (a group commit). */
  busy(): boolean;
  /** False while the actor holds state that cannot be reloaded (a user's live sessions). */
  canPassivate(): boolean;
  /** Synchronous cleanup (timers). Called exactly once when the activation ends. */
  deactivated(reason: string): void;
}

export interface ActorKindSpec<M> {
  create(ctx: ActorContext<M>): Actor<M>;
  /** Which mailbox lane a message goes to. */
  lane(msg: M): Lane;
  /** Answers the sender of a message that will not be processed. Must not throw. */
  reject(key: string, msg: M, reason: RejectReason, cause?: unknown): void;
}

export interface HostOptions {
  mailboxCapacity: number;
  turnBudget: number;
  idlePassivateMs: number;
  clock: Clock;
  log: ActorLog;
  schedule?: (fn: () => void) => void;
}

interface Entry<M> {
  kind: ActorKind;
  key: string;
  actor: Actor<M>;
  mailbox: Mailbox<M>;
  gone: boolean;
  stopReason: string | null;
  lastActiveAt: number;
  idleTimer: TimerHandle | null;
}

export class ActorHost<Msgs extends Record<ActorKind, unknown>> {
  private readonly specs = new Map<ActorKind, ActorKindSpec<never>>();
  private readonly entries = new Map<string, Entry<unknown>>();
  private draining = false;
  private stopped = false;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly opts: HostOptions) {}

  define<K extends ActorKind>(kind: K, spec: ActorKindSpec<Msgs[K]>): void {
    this.specs.set(kind, spec as ActorKindSpec<never>);
  }

  /** Delivers a message to a local actor, activating it when needed. Never throws. */
  tell<K extends ActorKind>(kind: K, key: string, msg: Msgs[K]): void {
    const spec = this.spec(kind);
    if (this.stopped) {
      this.reject(spec, kind, key, msg, 'shutting_down');
      return;
    }
    const entry = (this.entries.get(`${kind}/${key}`) ?? this.activate(kind, key)) as Entry<Msgs[K]>;
    if (!entry.mailbox.post(msg, spec.lane(msg))) this.reject(spec, kind, key, msg, 'mailbox_full');
  }

  isActive(kind: ActorKind, key: string): boolean {
    return this.entries.has(`${kind}/${key}`);
  }

  count(kind: ActorKind): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.kind === kind) n++;
    return n;
  }

  mailboxDepth(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.mailbox.depth;
    return n;
  }

  /**
   * Waits until no actor has queued messages or work in flight, then ends every activation.
   * Messages that arrive afterwards are rejected with `shutting_down`.
   */
  async drain(): Promise<void> {
    this.draining = true;
    while (!this.quiet()) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    this.stopped = true;
    for (const e of [...this.entries.values()]) this.finish(e, 'drain');
  }

  private quiet(): boolean {
    for (const e of this.entries.values()) if (!e.mailbox.idle || e.actor.busy()) return false;
    return true;
  }

  private spec<K extends ActorKind>(kind: K): ActorKindSpec<Msgs[K]> {
    const spec = this.specs.get(kind);
    if (!spec) throw new Error(`actor kind ${kind} is not defined on this host`);
    return spec as ActorKindSpec<Msgs[K]>;
  }

  private reject<M>(spec: ActorKindSpec<M>, kind: ActorKind, key: string, msg: M, reason: RejectReason, cause?: unknown): void {
    actorMetrics.rejected.inc({ kind, reason });
    try {
      spec.reject(key, msg, reason, cause);
    } catch (err) {
      this.opts.log.error({ err, kind, reason }, 'actor reject handler threw');
    }
  }

  private activate<K extends ActorKind>(kind: K, key: string): Entry<Msgs[K]> {
    type M = Msgs[K];
    const spec = this.spec(kind);
    const { clock, log } = this.opts;
    let entry: Entry<M>;
    const ctx: ActorContext<M> = {
      kind,
      key,
      self: (msg) => {
        if (!entry.gone) entry.mailbox.post(msg, 'system', true);
      },
      deactivate: (reason) => {
        if (entry.gone || entry.stopReason !== null) return;
        entry.stopReason = reason;
        if (!entry.mailbox.isRunning) this.finish(entry, reason);
      },
    };
    const mailbox = new Mailbox<M>(
      { kind, capacity: this.opts.mailboxCapacity, turnBudget: this.opts.turnBudget, clock, ...(this.opts.schedule ? { schedule: this.opts.schedule } : {}) },
      {
        handle: (msg) => entry.actor.receive(msg),
        error: (err) => log.error({ err, kind }, 'actor handler threw'),
        after: () => {
          if (entry.stopReason === null) return true;
          this.finish(entry, entry.stopReason);
          return false;
        },
        idle: () => this.idle(entry),
      },
      true,
    );
    entry = { kind, key, actor: undefined as unknown as Actor<M>, mailbox, gone: false, stopReason: null, lastActiveAt: clock.now(), idleTimer: null };
    entry.actor = spec.create(ctx);
    this.entries.set(`${kind}/${key}`, entry as Entry<unknown>);
    actorMetrics.active.inc({ kind });
    actorMetrics.activations.inc({ kind });
    entry.actor.activate().then(
      () => {
        if (!entry.gone) entry.mailbox.resume();
      },
      (err: unknown) => {
        if (entry.gone) return;
        log.warn({ err, kind }, 'actor activation failed');
        const rest = this.remove(entry, 'activation_failed');
        for (const e of rest) if (!e.self) this.reject(spec, kind, key, e.msg, 'activation_failed', err);
        if (this.draining) this.wakeDrain();
      },
    );
    return entry;
  }

  private idle<M>(entry: Entry<M>): void {
    entry.lastActiveAt = this.opts.clock.now();
    if (this.draining) this.wakeDrain();
    if (entry.idleTimer === null && entry.actor.canPassivate()) this.armIdle(entry, this.opts.idlePassivateMs);
  }

  private armIdle<M>(entry: Entry<M>, ms: number): void {
    entry.idleTimer = this.opts.clock.setTimer(ms, () => {
      entry.idleTimer = null;
      if (entry.gone || !entry.mailbox.idle) return;
      const idleFor = this.opts.clock.now() - entry.lastActiveAt;
      if (idleFor < this.opts.idlePassivateMs) this.armIdle(entry, this.opts.idlePassivateMs - idleFor);
      else if (entry.actor.canPassivate() && !entry.actor.busy()) this.finish(entry, 'idle');
    });
  }

  private wakeDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** Ends an activation; queued external messages go to a fresh activation (or are rejected when stopped). */
  private finish<M>(entry: Entry<M>, reason: string): void {
    if (entry.gone) return;
    const rest = this.remove(entry, reason);
    try {
      entry.actor.deactivated(reason);
    } catch (err) {
      this.opts.log.error({ err, kind: entry.kind }, 'actor deactivation threw');
    }
    for (const e of rest) if (!e.self) this.tell(entry.kind, entry.key, e.msg as Msgs[ActorKind]);
    if (this.draining) this.wakeDrain();
  }

  private remove<M>(entry: Entry<M>, reason: string): MailboxEntry<M>[] {
    entry.gone = true;
    if (entry.idleTimer !== null) this.opts.clock.clearTimer(entry.idleTimer);
    entry.idleTimer = null;
    this.entries.delete(`${entry.kind}/${entry.key}`);
    actorMetrics.active.dec({ kind: entry.kind });
    actorMetrics.passivations.inc({ kind: entry.kind });
    this.opts.log.debug({ kind: entry.kind, reason }, 'actor deactivated');
    return entry.mailbox.stop();
  }
}
