/**
 * A bounded actor mailbox with two lanes. The system lane (control: activation results, commit
 * completions, timers, session attach/detach) is always taken first; the user lane carries work.
 * At most `turnBudget` messages run per turn, then the mailbox yields to the event loop so one busy
 * actor cannot starve the others on its shard.
 *
 * Full: `post` to the user lane returns false and the message is NOT queued; the caller must answer
 * the sender (an error frame, a disconnect), never drop silently. The system lane is not capped by
 * `capacity`: its messages come from work the actor itself started (bounded by what is in flight)
 * or one attach/detach per session (bounded by the gateway's connection limit).
 *
 * A handler returning a promise is awaited before the next message: that is how an actor keeps its
 * "one message at a time" guarantee across an await (activation, a membership check).
 */
import type { ActorKind } from './address.js';
import type { Clock } from './clock.js';
import { actorMetrics } from './metrics.js';

export type Lane = 'system' | 'user';

export interface MailboxEntry<M> {
  msg: M;
  lane: Lane;
  /** True for messages the actor posted to itself (they die with the activation that posted them). */
  self: boolean;
  postedAt: number;
}

export interface MailboxOptions {
  kind: ActorKind;
  capacity: number;
  turnBudget: number;
  clock: Clock;
  /** How a turn is scheduled; setImmediate lets I/O callbacks and other actors run in between. */
  schedule?: (fn: () => void) => void;
}

export interface MailboxHooks<M> {
  handle(msg: M): void | Promise<void>;
  /** A handler threw: log it. The mailbox goes on with the next message. */
  error(err: unknown, msg: M): void;
  /** Called after a turn that left the mailbox empty. */
  idle?(): void;
  /** Called after every message; returning false stops the mailbox (the actor is going away). */
  after?(): boolean;
}

/** A FIFO with O(1) push and shift (arrays shift in O(n)). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(x: T): void {
    this.items.push(x);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }

  takeAll(): T[] {
    const out = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return out;
  }
}

export class Mailbox<M> {
  private readonly system = new Fifo<MailboxEntry<M>>();
  private readonly user = new Fifo<MailboxEntry<M>>();
  private scheduled = false;
  private running = false;
  private paused: boolean;
  private stopped = false;
  private readonly schedule: (fn: () => void) => void;
  private readonly labels: { kind: ActorKind };

  constructor(
    private readonly opts: MailboxOptions,
    private readonly hooks: MailboxHooks<M>,
    startPaused = false,
  ) {
    this.paused = startPaused;
    this.schedule = opts.schedule ?? setImmediate;
    this.labels = { kind: opts.kind };
  }

  get depth(): number {
    return this.system.length + this.user.length;
  }

  /** Nothing queued and no message running. */
  get idle(): boolean {
    return this.depth === 0 && !this.running;
  }

  /** A message is being processed right now. */
  get isRunning(): boolean {
    return this.running;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Queues a message. Returns false when the user lane is full or the mailbox was stopped; the
   * message was not queued and the caller owns the answer to its sender.
   */
  post(msg: M, lane: Lane = 'user', self = false): boolean {
    if (this.stopped) return false;
    if (lane === 'user' && this.user.length >= this.opts.capacity) return false;
    (lane === 'system' ? this.system : this.user).push({ msg, lane, self, postedAt: this.opts.clock.now() });
    actorMetrics.mailboxDepth.inc(this.labels);
    this.kick();
    return true;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.kick();
  }

  /** Stops for good and returns what was still queued (system lane first), e.g. to hand it over. */
  stop(): MailboxEntry<M>[] {
    this.stopped = true;
    const rest = [...this.system.takeAll(), ...this.user.takeAll()];
    if (rest.length > 0) actorMetrics.mailboxDepth.dec(this.labels, rest.length);
    return rest;
  }

  private kick(): void {
    if (this.scheduled || this.running || this.paused || this.stopped || this.depth === 0) return;
    this.scheduled = true;
    this.schedule(() => {
      this.scheduled = false;
      void this.turn();
    });
  }

  private async turn(): Promise<void> {
    if (this.running || this.paused || this.stopped) return;
    this.running = true;
    let n = 0;
    try {
      while (n < this.opts.turnBudget && !this.paused && !this.stopped) {
        const entry = this.system.shift() ?? this.user.shift();
        if (entry === undefined) break;
        n++;
        actorMetrics.mailboxDepth.dec(this.labels);
        actorMetrics.mailboxWait.observe(this.labels, Math.max(0, this.opts.clock.now() - entry.postedAt) / 1000);
        actorMetrics.messages.inc(this.labels);
        try {
          const r = this.hooks.handle(entry.msg);
          if (r !== undefined) await r;
        } catch (err) {
          actorMetrics.handlerErrors.inc(this.labels);
          this.hooks.error(err, entry.msg);
        }
        if (this.hooks.after && !this.hooks.after()) break;
      }
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.depth > 0) this.kick();
    else this.hooks.idle?.();
  }
}
