/**
 * The user actor: one user's live sessions (device -> SessionRef) and the deliveries pushed to them
 * and not yet acknowledged.
 *
 * - `attach` registers a device's session; an older session of the same device is closed (4502).
 * - `deliver` pushes `msg` to every online device except the sending one and keeps it pending per
 *   device. Unacknowledged deliveries are pushed again after `deliveryRetryMs`, doubling, and after
 *   `deliveryMaxRetries` the device is disconnected with 4001 so it reconnects and syncs.
 * - `dack` (cumulative) clears pending entries and goes on to the conversation actor, which checks
 *   it, queues the device's delivered-cursor write (batched per shard) and fans out the receipt.
 * - A push that finds the connection closed keeps nothing: the device syncs when it is back.
 * Nothing here is durable: on loss (overflow, crash) devices resync from their stored cursors.
 */
import { CLOSE, CLOSE_REASONS } from '../protocol/codes.js';
import type { MsgFrame, ReceiptFrame } from '../protocol/client-frames.js';
import type { Clock, TimerHandle } from './clock.js';
import type { DackBatcher } from './dack-batcher.js';
import type { Actor, ActorContext } from './host.js';
import type { ActorLog } from './log.js';
import type { DeliveredEntry, UserDack, UserDeliver, UserMsg, UserReceipt } from './messages.js';
import { deliveryMetrics } from './metrics.js';
import { DevicePending } from './pending.js';
import type { Router } from './router.js';
import type { SessionRef } from './session.js';

export interface UserDeps {
  router: Router;
  clock: Clock;
  log: ActorLog;
  deliveryRetryMs: number;
  deliveryMaxRetries: number;
  /** Unacknowledged deliveries one device may hold before it is disconnected to resync. */
  maxPendingPerDevice: number;
  /** Coalesces the dacks forwarded to conversation actors (one message per conversation per turn); absent: one each. */
  dacks?: DackBatcher;
  /**
   * Wakes a user with no attached device (src/jobs/push PushService: a content-free push, collapsed
   * per user). Fire and forget: never awaited, never fails delivery. Absent: no push. `lost` is true
   * when the actor had devices and every push found its socket gone, false when it had none (in
   * cluster mode the fan-out's session lookup decides that case, see ClusterRouting).
   */
  wake?: { notify(userId: string, conversationId: string, seq: number, lost: boolean): unknown };
}

/**
 * One device's live session. Kept small (a shard holds one per connection): pending deliveries and
 * the retry timer exist only while something is unacknowledged.
 */
export interface Device {
  readonly id: string;
  session: SessionRef;
  pending: DevicePending | null;
  timer: TimerHandle | null;
  timerAt: number;
}

export function sameSession(a: SessionRef, b: SessionRef): boolean {
  return a.connId === b.connId && a.shard === b.shard && a.node === b.node;
}

/**
 * Memory: there is one user actor per connected user, and most are idle. So its state is an array
 * of devices (a user has a handful; a linear search beats a Map's hash table, which costs a few
 * hundred bytes even when it holds one entry), `deps` is one object shared by every user actor of
 * the shard, and an idle actor with nothing pending goes dormant (`dormantState`): the host keeps
 * only its device array, not an activation with a mailbox, until the next message wakes it with the
 * same array.
 */
export class UserActor implements Actor<UserMsg> {
  private devices: Device[];

  constructor(
    private readonly ctx: ActorContext<UserMsg>,
    private readonly deps: UserDeps,
    dormant?: Device[],
  ) {
    this.devices = dormant ?? [];
  }

  /**
   * The actor's whole state while it can sleep: its devices, when it has some and none holds a
   * pending delivery or a retry timer (those need a live activation). Null otherwise.
   */
  dormantState(): Device[] | null {
    if (this.devices.length === 0) return null;
    for (const d of this.devices) if (d.pending !== null || d.timer !== null) return null;
    return this.devices;
  }

  activate(): Promise<void> {
    return Promise.resolve();
  }

  receive(msg: UserMsg): void {
    switch (msg.t) {
      case 'attach':
        return this.onAttach(msg.session);
      case 'detach': {
        const d = this.find(msg.session.device);
        if (d !== undefined && sameSession(d.session, msg.session)) this.drop(d);
        return;
      }
      case 'deliver':
        return this.onDeliver(msg);
      case 'dack':
        return this.onDack(msg);
      case 'receipt':
        return this.onReceipt(msg);
      case 'retry':
        return this.onRetry(msg.device);
      case 'overflow':
        for (const d of [...this.devices]) this.disconnect(d, 'overloaded');
        return;
      default: {
        const never: never = msg;
        throw new Error(`unhandled user message ${JSON.stringify(never)}`);
      }
    }
  }

  busy(): boolean {
    return false;
  }

  canPassivate(): boolean {
    return this.devices.length === 0;
  }

  deactivated(): void {
    for (const d of [...this.devices]) this.drop(d);
  }

  private find(id: string): Device | undefined {
    for (const d of this.devices) if (d.id === id) return d;
    return undefined;
  }

  private onAttach(session: SessionRef): void {
    const known = this.find(session.device);
    if (known !== undefined && !sameSession(known.session, session)) {
      this.deps.router.close(known.session, CLOSE.replaced, CLOSE_REASONS[CLOSE.replaced]);
      // What the old session had pending, the new one gets by sync (it starts from the cursor).
      this.drop(known);
    }
    if (this.find(session.device) === undefined) {
      const d: Device = { id: session.device, session, pending: null, timer: null, timerAt: 0 };
      // A literal holds exactly one element; push() onto an empty array would reserve 17 slots.
      if (this.devices.length === 0) this.devices = [d];
      else this.devices.push(d);
    }
    this.deps.router.attached(session);
  }

  private onDeliver(m: UserDeliver): void {
    const me = this.ctx.key;
    const had = this.devices.length > 0;
    // A copy: a push that finds a device gone drops it from `devices`. (With one device none is
    // needed: dropping it ends the loop.)
    const devices = this.devices.length === 1 ? this.devices : [...this.devices];
    let pushed = 0;
    for (const d of devices) {
      for (const e of m.msgs) {
        if (e.from === me && e.fdev === d.id) continue;
        if (!this.push(d, e.from === me ? msgFrame(m, e, true) : sharedMsgFrame(m, e))) break;
        pushed++;
      }
    }
    if (pushed > 0) deliveryMetrics.pushed.inc(pushed);
    if (this.devices.length === 0) this.wakeOffline(m, had);
  }

  /** Nobody of this user is online (or every push found its socket gone): a push, if others wrote. */
  private wakeOffline(m: UserDeliver, lost: boolean): void {
    const wake = this.deps.wake;
    if (wake === undefined) return;
    const me = this.ctx.key;
    const last = m.msgs.findLast((e) => e.from !== me);
    if (last !== undefined) void wake.notify(me, m.conv, last.seq, lost);
  }

  /**
   * Pushes and tracks one delivery; false when the device is gone (closed or disconnected). The
   * caller counts it in ticks_delivery_pushed_total (once per deliver, not per frame).
   */
  private push(d: Device, frame: MsgFrame): boolean {
    if ((d.pending?.size ?? 0) >= this.deps.maxPendingPerDevice) {
      this.disconnect(d, 'too_many_pending');
      return false;
    }
    const result = this.deps.router.push(d.session, frame);
    if (result === 'closed' || result === 'overflow') {
      // The socket is gone (and the gateway reports `closed`, which detaches it). Keep nothing.
      this.drop(d);
      return false;
    }
    const now = this.deps.clock.now();
    const dueAt = now + this.deps.deliveryRetryMs;
    (d.pending ??= new DevicePending()).add(frame, now, this.deps.deliveryRetryMs);
    // The armed timer is due no later than this delivery: nothing to move (arm scans every entry).
    if (d.timer === null || d.timerAt > dueAt) this.arm(d);
    return true;
  }

  private onDack(m: UserDack): void {
    const d = this.find(m.session.device);
    if (d !== undefined && d.pending !== null) {
      const now = this.deps.clock.now();
      const acked = d.pending.ack(m.conv, m.seq);
      for (const e of acked) deliveryMetrics.latency.observe((now - e.firstPushedAt) / 1000);
      if (acked.length > 0) deliveryMetrics.acked.inc(acked.length);
      if (d.pending.size === 0) {
        d.pending = null;
        this.arm(d);
      }
    }
    if (m.stored === true) return;
    if (this.deps.dacks !== undefined) this.deps.dacks.add(m.conv, m.session, m.seq);
    else this.deps.router.tell('conv', m.conv, { t: 'delivered', session: m.session, seq: m.seq });
  }

  private onReceipt(m: UserReceipt): void {
    for (const d of [...this.devices]) {
      // A read made on one of this user's devices is news for the others only.
      if (m.user === this.ctx.key && m.device === d.id) continue;
      const frame: ReceiptFrame = { t: 'receipt', conv: m.conv, kind: m.kind, user: m.user, seq: m.seq };
      if (m.all === true) frame.all = true;
      else if (m.kind === 'delivered') frame.device = m.device;
      const r = this.deps.router.push(d.session, frame);
      if (r === 'closed' || r === 'overflow') this.drop(d);
    }
  }

  private onRetry(id: string): void {
    const d = this.find(id);
    if (d === undefined) return;
    d.timer = null;
    if (d.pending === null) return;
    const now = this.deps.clock.now();
    const { deliveryRetryMs, deliveryMaxRetries } = this.deps;
    for (const e of d.pending.due(now)) {
      if (e.attempts > deliveryMaxRetries) {
        this.disconnect(d, 'max_retries');
        return;
      }
      deliveryMetrics.retries.inc();
      deliveryMetrics.pushed.inc();
      const r = this.deps.router.push(d.session, e.frame);
      if (r === 'closed' || r === 'overflow') {
        this.drop(d);
        return;
      }
      e.dueAt = now + deliveryRetryMs * 2 ** e.attempts;
      e.attempts++;
    }
    this.arm(d);
  }

  /** Keeps one timer per device, at its earliest due delivery. */
  private arm(d: Device): void {
    const at = d.pending?.nextDue() ?? null;
    if (at === null) {
      if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
      d.timer = null;
      return;
    }
    if (d.timer !== null && d.timerAt <= at) return;
    if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
    d.timerAt = at;
    const id = d.id;
    d.timer = this.deps.clock.setTimer(Math.max(0, at - this.deps.clock.now()), () => this.ctx.self({ t: 'retry', device: id }));
  }

  /** Closes the device's session with 4001: it reconnects and syncs from its cursor. */
  private disconnect(d: Device, reason: 'max_retries' | 'too_many_pending' | 'overloaded'): void {
    if (!this.devices.includes(d)) return;
    deliveryMetrics.gaveUp.inc({ reason });
    this.deps.log.info({ reason }, 'disconnecting a device to resync');
    this.deps.router.close(d.session, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
    this.drop(d);
  }

  private drop(d: Device): void {
    const i = this.devices.indexOf(d);
    if (i < 0) return;
    if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
    d.timer = null;
    d.pending?.clear();
    d.pending = null;
    this.devices.splice(i, 1);
  }
}

/** The `msg` frame of `e` for a device of `m`'s user; `own`: the user sent it (cmid included). */
function msgFrame(m: UserDeliver, e: DeliveredEntry, own: boolean): MsgFrame {
  const frame: MsgFrame = { t: 'msg', conv: m.conv, kind: m.kind, seq: e.seq, mid: e.mid, from: e.from, fdev: e.fdev, body: e.body, ts: e.ts };
  if (e.sys !== undefined) frame.sys = e.sys;
  else if (own) frame.cmid = e.cmid;
  if (e.media !== undefined) frame.media = e.media;
  return frame;
}

/**
 * The `msg` frame of `e` for every user but its sender. A fan-out hands the same entry objects to
 * all the user actors of a shard (one `deliver` per member, sharing `msgs`), so they share one
 * frame object per message and the gateway encodes it once (src/gateway/connections.ts), not once
 * per member device. Nothing mutates a frame once built: a retry pushes the same object again.
 * Entries that crossed a thread or a node are copies and get their own frame there.
 */
const sharedFrames = new WeakMap<DeliveredEntry, MsgFrame>();
function sharedMsgFrame(m: UserDeliver, e: DeliveredEntry): MsgFrame {
  let frame = sharedFrames.get(e);
  if (frame === undefined || frame.conv !== m.conv || frame.kind !== m.kind) sharedFrames.set(e, (frame = msgFrame(m, e, false)));
  return frame;
}
