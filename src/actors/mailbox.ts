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
import { actorMetrics, mailboxTally, type MailboxTally } from './metrics.js';

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

/**
 * Runs the turns of every mailbox of a shard from one setImmediate instead of one each: the turns
 * scheduled before it fires run in it, in the order they were scheduled; turns scheduled while it
 * runs wait for the next one (I/O callbacks run in between, as with a setImmediate per turn).
 * `around` wraps each run: the shard passes the gateway's write batch (ConnectionSink.batch), so
 * what all those turns push reaches each socket in one write, e.g. the `msg` frames of a group
 * commit's messages for a member's device. A thrown turn is reported and the others still run.
 */
export class TurnScheduler {
  private queue: (() => void)[] = [];
  private armed = false;

  constructor(
    private readonly around: (run: () => void) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** MailboxOptions.schedule. */
  readonly schedule = (fn: () => void): void => {
    this.queue.push(fn);
    if (this.armed) return;
    this.armed = true;
    setImmediate(this.run);
  };

  private readonly run = (): void => {
    this.armed = false;
    const turns = this.queue;
    this.queue = [];
    try {
      this.around(() => {
        for (const fn of turns) {
          try {
            fn();
          } catch (err) {
            this.onError(err);
          }
        }
      });
    } catch (err) {
      this.onError(err);
    }
  };
}

const SCHEDULED = 1;
const RUNNING = 2;
const PAUSED = 4;
const STOPPED = 8;

/** One labels object and one tally per actor kind, shared by every mailbox of that kind. */
const kindLabels = new Map<ActorKind, { kind: ActorKind }>();
function labelsOf(kind: ActorKind): { kind: ActorKind } {
  let l = kindLabels.get(kind);
  if (l === undefined) kindLabels.set(kind, (l = { kind }));
  return l;
}
const kindTallies = new Map<ActorKind, MailboxTally>();
function tallyOf(kind: ActorKind): MailboxTally {
  let t = kindTallies.get(kind);
  if (t === undefined) kindTallies.set(kind, (t = mailboxTally(kind)));
  return t;
}

/**
 * Memory: a shard holds a mailbox per active actor, and most of them (a user actor per idle
 * connection) are empty most of the time. So an empty mailbox is four fields: the lanes are
 * allocated on the first post and released whenever a turn leaves the mailbox empty, the flags are
 * one number, and `opts` and `hooks` are shared objects (the host passes one options object per
 * actor kind and the actor's own cell as the hooks), not per-mailbox copies or closures.
 */
export class Mailbox<M> {
  private system: Fifo<MailboxEntry<M>> | null = null;
  private user: Fifo<MailboxEntry<M>> | null = null;
  private flags: number;

  constructor(
    private readonly opts: MailboxOptions,
    private readonly hooks: MailboxHooks<M>,
    startPaused = false,
  ) {
    this.flags = startPaused ? PAUSED : 0;
  }

  get depth(): number {
    return (this.system?.length ?? 0) + (this.user?.length ?? 0);
  }

  /** Nothing queued and no message running. */
  get idle(): boolean {
    return this.depth === 0 && (this.flags & RUNNING) === 0;
  }

  /** A message is being processed right now. */
  get isRunning(): boolean {
    return (this.flags & RUNNING) !== 0;
  }

  get isStopped(): boolean {
    return (this.flags & STOPPED) !== 0;
  }

  /**
   * Queues a message. Returns false when the user lane is full or the mailbox was stopped; the
   * message was not queued and the caller owns the answer to its sender.
   */
  post(msg: M, lane: Lane = 'user', self = false): boolean {
    if ((this.flags & STOPPED) !== 0) return false;
    if (lane === 'user' && (this.user?.length ?? 0) >= this.opts.capacity) return false;
    const q = lane === 'system' ? (this.system ??= new Fifo()) : (this.user ??= new Fifo());
    q.push({ msg, lane, self, postedAt: this.opts.clock.now() });
    tallyOf(this.opts.kind).depth++;
    this.kick();
    return true;
  }

  pause(): void {
    this.flags |= PAUSED;
  }

  resume(): void {
    this.flags &= ~PAUSED;
    this.kick();
  }

  /** Stops for good and returns what was still queued (system lane first), e.g. to hand it over. */
  stop(): MailboxEntry<M>[] {
    this.flags |= STOPPED;
    const rest = [...(this.system?.takeAll() ?? []), ...(this.user?.takeAll() ?? [])];
    this.system = null;
    this.user = null;
    tallyOf(this.opts.kind).depth -= rest.length;
    return rest;
  }

  private kick(): void {
    if ((this.flags & (SCHEDULED | RUNNING | PAUSED | STOPPED)) !== 0 || this.depth === 0) return;
    this.flags |= SCHEDULED;
    (this.opts.schedule ?? setImmediate)(() => {
      this.flags &= ~SCHEDULED;
      void this.turn();
    });
  }

  private next(): MailboxEntry<M> | undefined {
    return this.system?.shift() ?? this.user?.shift();
  }

  private async turn(): Promise<void> {
    if ((this.flags & (RUNNING | PAUSED | STOPPED)) !== 0) return;
    this.flags |= RUNNING;
    const labels = labelsOf(this.opts.kind);
    const tally = tallyOf(this.opts.kind);
    let n = 0;
    try {
      while (n < this.opts.turnBudget && (this.flags & (PAUSED | STOPPED)) === 0) {
        const entry = this.next();
        if (entry === undefined) break;
        n++;
        tally.depth--;
        tally.messages++;
        actorMetrics.mailboxWait.observe(labels, Math.max(0, this.opts.clock.now() - entry.postedAt) / 1000);
        try {
          const r = this.hooks.handle(entry.msg);
          if (r !== undefined) await r;
        } catch (err) {
          actorMetrics.handlerErrors.inc(labels);
          this.hooks.error(err, entry.msg);
        }
        if (this.hooks.after && !this.hooks.after()) break;
      }
    } finally {
      this.flags &= ~RUNNING;
    }
    if ((this.flags & STOPPED) !== 0) return;
    if (this.depth > 0) return this.kick();
    // Empty: give the lanes' arrays back (an idle actor keeps no queue storage).
    this.system = null;
    this.user = null;
    this.hooks.idle?.();
  }
}
