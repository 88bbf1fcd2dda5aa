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
import { Mailbox, type Lane, type MailboxEntry, type MailboxHooks, type MailboxOptions } from './mailbox.js';
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
  /**
   * Optional. When the activation is ended with a hand-off (`ActorHost.deactivate(.., handOff)`),
   * called before `deactivated`: the external messages the actor accepted but has not answered
   * (e.g. sends queued for, or in, a group commit), oldest first. From then on they are the
   * hand-off's to answer; the actor must not answer them.
   */
  handBack?(): M[];
}

export interface ActorKindSpec<M> {
  /** A new activation; `dormant` is the record its previous activation left (see `dormant`). */
  create(ctx: ActorContext<M>, dormant?: object): Actor<M>;
  /**
   * Optional. Called whenever an activation's mailbox runs empty. A non-null result is a compact
   * record of the actor's whole state: the host then ends the activation (without `deactivated`:
   * nothing may need cleaning up, so return null while the actor has timers or work in flight) and
   * keeps only the record, until the next message creates an activation from it. For actors that
   * hold state which cannot be reloaded from a store and are idle most of the time: a user actor
   * with live sessions holds only its device records while idle, instead of an activation with a
   * mailbox. A dormant actor never passivates; it is dropped on drain.
   */
  dormant?(actor: Actor<M>): object | null;
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

/**
 * One activation: its identity, its mailbox and its lifecycle state. The cell is also the actor's
 * context and the mailbox's hooks (methods on the class, not closures per activation): a shard
 * holds an activation per connected user, so every per-activation object counts.
 */
class Cell<M> implements ActorContext<M>, MailboxHooks<M> {
  actor!: Actor<M>;
  readonly mailbox: Mailbox<M>;
  gone = false;
  stopReason: string | null = null;
  lastActiveAt: number;
  idleTimer: TimerHandle | null = null;

  constructor(
    private readonly host: ActorHost<never>,
    readonly kind: ActorKind,
    readonly key: string,
    mailboxOptions: MailboxOptions,
  ) {
    this.mailbox = new Mailbox<M>(mailboxOptions, this, true);
    this.lastActiveAt = mailboxOptions.clock.now();
  }

  self(msg: M): void {
    if (!this.gone) this.mailbox.post(msg, 'system', true);
  }

  deactivate(reason: string): void {
    if (this.gone || this.stopReason !== null) return;
    this.stopReason = reason;
    if (!this.mailbox.isRunning) this.host.finishCell(this, reason);
  }

  handle(msg: M): void | Promise<void> {
    return this.actor.receive(msg);
  }

  error(err: unknown): void {
    this.host.logError(err, this.kind);
  }

  after(): boolean {
    if (this.stopReason === null) return true;
    this.host.finishCell(this, this.stopReason);
    return false;
  }

  idle(): void {
    this.host.idleCell(this);
  }
}

export class ActorHost<Msgs extends Record<ActorKind, unknown>> {
  private readonly specs = new Map<ActorKind, ActorKindSpec<never>>();
  /** Activations per kind, keyed by actor key (no `kind/key` string per activation). */
  private readonly cells = new Map<ActorKind, Map<string, Cell<unknown>>>();
  /** Records of dormant actors per kind (see ActorKindSpec.dormant). */
  private readonly sleeping = new Map<ActorKind, Map<string, object>>();
  /** One mailbox options object per kind, shared by all its mailboxes. */
  private readonly mailboxOptions = new Map<ActorKind, MailboxOptions>();
  private draining = false;
  private stopped = false;
  private drainWaiters: (() => void)[] = [];
  /** Activations being ended with a hand-off (see deactivate); a map, not a field per cell. */
  private readonly handOffs = new Map<Cell<unknown>, (msgs: unknown[]) => void>();

  constructor(private readonly opts: HostOptions) {}

  define<K extends ActorKind>(kind: K, spec: ActorKindSpec<Msgs[K]>): void {
    this.specs.set(kind, spec as ActorKindSpec<never>);
    this.cells.set(kind, new Map());
    this.sleeping.set(kind, new Map());
    const { mailboxCapacity: capacity, turnBudget, clock, schedule } = this.opts;
    this.mailboxOptions.set(kind, { kind, capacity, turnBudget, clock, ...(schedule ? { schedule } : {}) });
  }

  /** Delivers a message to a local actor, activating it when needed. Never throws. */
  tell<K extends ActorKind>(kind: K, key: string, msg: Msgs[K]): void {
    const spec = this.spec(kind);
    if (this.stopped) {
      this.reject(spec, kind, key, msg, 'shutting_down');
      return;
    }
    const cell = (this.cellsOf(kind).get(key) ?? this.activate(kind, key)) as Cell<Msgs[K]>;
    if (!cell.mailbox.post(msg, spec.lane(msg))) this.reject(spec, kind, key, msg, 'mailbox_full');
  }

  /**
   * Ends the activation of `kind/key` from outside (e.g. its directory lease was lost), exactly as its
   * own `ctx.deactivate` would: after the message running now; queued external messages go to a
   * fresh activation. A no-op when there is no activation.
   *
   * With `handOff`, nothing goes to a fresh activation here: the messages the actor hands back
   * (Actor.handBack), then the mailbox's queued external messages, in order, are passed to
   * `handOff` once the activation has ended (e.g. to be forwarded to the actor's new owner node).
   */
  deactivate<K extends ActorKind>(kind: K, key: string, reason: string, handOff?: (msgs: Msgs[K][]) => void): void {
    const cell = this.cells.get(kind)?.get(key);
    if (cell === undefined) return;
    if (handOff !== undefined) this.handOffs.set(cell, handOff as (msgs: unknown[]) => void);
    cell.deactivate(reason);
  }

  /** An activation of `kind/key` exists here (not counting a dormant record). */
  isActive(kind: ActorKind, key: string): boolean {
    return this.cells.get(kind)?.has(key) ?? false;
  }

  isDormant(kind: ActorKind, key: string): boolean {
    return this.sleeping.get(kind)?.has(key) ?? false;
  }

  /** Actors of `kind` hosted here: activations plus dormant records. */
  count(kind: ActorKind): number {
    return (this.cells.get(kind)?.size ?? 0) + (this.sleeping.get(kind)?.size ?? 0);
  }

  dormantCount(kind: ActorKind): number {
    return this.sleeping.get(kind)?.size ?? 0;
  }

  mailboxDepth(): number {
    let n = 0;
    for (const c of this.allCells()) n += c.mailbox.depth;
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
    for (const c of [...this.allCells()]) this.finishCell(c, 'drain');
    for (const m of this.sleeping.values()) m.clear();
  }

  private *allCells(): Iterable<Cell<unknown>> {
    for (const m of this.cells.values()) yield* m.values();
  }

  private cellsOf(kind: ActorKind): Map<string, Cell<unknown>> {
    const m = this.cells.get(kind);
    if (m === undefined) throw new Error(`actor kind ${kind} is not defined on this host`);
    return m;
  }

  private quiet(): boolean {
    for (const c of this.allCells()) if (!c.mailbox.idle || c.actor.busy()) return false;
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

  private activate<K extends ActorKind>(kind: K, key: string): Cell<Msgs[K]> {
    type M = Msgs[K];
    const spec = this.spec(kind);
    const cell = new Cell<M>(this as unknown as ActorHost<never>, kind, key, this.mailboxOptions.get(kind)!);
    const sleeping = this.sleeping.get(kind)!;
    const record = sleeping.get(key);
    if (record !== undefined) {
      // Waking a dormant actor is not an activation (nothing is loaded): not counted as one.
      sleeping.delete(key);
      cell.actor = spec.create(cell, record);
    } else {
      cell.actor = spec.create(cell);
      actorMetrics.activations.inc({ kind });
    }
    this.cellsOf(kind).set(key, cell as Cell<unknown>);
    actorMetrics.active.inc({ kind });
    cell.actor.activate().then(
      () => {
        if (!cell.gone) cell.mailbox.resume();
      },
      (err: unknown) => {
        if (cell.gone) return;
        this.opts.log.warn({ err, kind }, 'actor activation failed');
        const rest = this.remove(cell, 'activation_failed');
        for (const e of rest) if (!e.self) this.reject(spec, kind, key, e.msg, 'activation_failed', err);
        if (this.draining) this.wakeDrain();
      },
    );
    return cell;
  }

  /** @internal Cell hook: a handler threw. */
  logError(err: unknown, kind: ActorKind): void {
    this.opts.log.error({ err, kind }, 'actor handler threw');
  }

  /** @internal Cell hook: a turn left the mailbox empty. */
  idleCell<M>(cell: Cell<M>): void {
    cell.lastActiveAt = this.opts.clock.now();
    if (this.draining) this.wakeDrain();
    if (!this.draining && cell.stopReason === null && !cell.actor.busy()) {
      const record = (this.specs.get(cell.kind) as ActorKindSpec<M> | undefined)?.dormant?.(cell.actor) ?? null;
      if (record !== null) {
        this.remove(cell, 'dormant', false);
        this.sleeping.get(cell.kind)!.set(cell.key, record);
        return;
      }
    }
    if (cell.idleTimer === null && cell.actor.canPassivate()) this.armIdle(cell, this.opts.idlePassivateMs);
  }

  private armIdle<M>(cell: Cell<M>, ms: number): void {
    cell.idleTimer = this.opts.clock.setTimer(ms, () => {
      cell.idleTimer = null;
      if (cell.gone || !cell.mailbox.idle) return;
      const idleFor = this.opts.clock.now() - cell.lastActiveAt;
      if (idleFor < this.opts.idlePassivateMs) this.armIdle(cell, this.opts.idlePassivateMs - idleFor);
      else if (cell.actor.canPassivate() && !cell.actor.busy()) this.finishCell(cell, 'idle');
    });
  }

  private wakeDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * @internal Ends an activation; queued external messages go to a fresh activation (or are
   * rejected when stopped).
   */
  finishCell<M>(cell: Cell<M>, reason: string): void {
    if (cell.gone) return;
    const handOff = this.handOffs.get(cell as Cell<unknown>);
    if (handOff !== undefined) this.handOffs.delete(cell as Cell<unknown>);
    const rest = this.remove(cell, reason);
    let held: M[] = [];
    if (handOff !== undefined) {
      try {
        held = cell.actor.handBack?.() ?? [];
      } catch (err) {
        this.opts.log.error({ err, kind: cell.kind }, 'actor hand-back threw');
      }
    }
    try {
      cell.actor.deactivated(reason);
    } catch (err) {
      this.opts.log.error({ err, kind: cell.kind }, 'actor deactivation threw');
    }
    if (handOff !== undefined) {
      for (const e of rest) if (!e.self) held.push(e.msg);
      if (held.length > 0) {
        try {
          handOff(held);
        } catch (err) {
          this.opts.log.error({ err, kind: cell.kind }, 'actor hand-off threw');
        }
      }
    } else {
      for (const e of rest) if (!e.self) this.tell(cell.kind, cell.key, e.msg as Msgs[ActorKind]);
    }
    if (this.draining) this.wakeDrain();
  }

  private remove<M>(cell: Cell<M>, reason: string, passivation = true): MailboxEntry<M>[] {
    cell.gone = true;
    this.handOffs.delete(cell as Cell<unknown>);
    if (cell.idleTimer !== null) this.opts.clock.clearTimer(cell.idleTimer);
    cell.idleTimer = null;
    this.cells.get(cell.kind)?.delete(cell.key);
    actorMetrics.active.dec({ kind: cell.kind });
    if (passivation) {
      actorMetrics.passivations.inc({ kind: cell.kind });
      this.opts.log.debug({ kind: cell.kind, reason }, 'actor deactivated');
    }
    return cell.mailbox.stop();
  }
}
