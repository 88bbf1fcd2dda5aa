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
import type { Actor, ActorContext } from './host.js';
import type { ActorLog } from './log.js';
import type { UserDack, UserDeliver, UserMsg, UserReceipt } from './messages.js';
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
}

interface Device {
  session: SessionRef;
  pending: DevicePending;
  timer: TimerHandle | null;
  timerAt: number;
}

export function sameSession(a: SessionRef, b: SessionRef): boolean {
  return a.connId === b.connId && a.shard === b.shard && a.node === b.node;
}

export class UserActor implements Actor<UserMsg> {
  private readonly devices = new Map<string, Device>();

  constructor(
    private readonly ctx: ActorContext<UserMsg>,
    private readonly deps: UserDeps,
  ) {}

  activate(): Promise<void> {
    return Promise.resolve();
  }

  receive(msg: UserMsg): void {
    switch (msg.t) {
      case 'attach':
        return this.onAttach(msg.session);
      case 'detach': {
        const d = this.devices.get(msg.session.device);
        if (d !== undefined && sameSession(d.session, msg.session)) this.drop(msg.session.device);
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
        for (const id of [...this.devices.keys()]) this.disconnect(id, 'overloaded');
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
    return this.devices.size === 0;
  }

  deactivated(): void {
    for (const id of [...this.devices.keys()]) this.drop(id);
  }

  private onAttach(session: SessionRef): void {
    const known = this.devices.get(session.device);
    if (known !== undefined && !sameSession(known.session, session)) {
      this.deps.router.close(known.session, CLOSE.replaced, CLOSE_REASONS[CLOSE.replaced]);
      // What the old session had pending, the new one gets by sync (it starts from the cursor).
      this.drop(session.device);
    }
    if (!this.devices.has(session.device)) {
      this.devices.set(session.device, { session, pending: new DevicePending(), timer: null, timerAt: 0 });
    }
    this.deps.router.attached(session);
  }

  private onDeliver(m: UserDeliver): void {
    const me = this.ctx.key;
    for (const [id, d] of this.devices) {
      for (const e of m.msgs) {
        if (e.from === me && e.fdev === id) continue;
        const frame: MsgFrame = { t: 'msg', conv: m.conv, kind: m.kind, seq: e.seq, mid: e.mid, from: e.from, fdev: e.fdev, body: e.body, ts: e.ts };
        if (e.from === me) frame.cmid = e.cmid;
        if (!this.push(id, d, frame)) break;
      }
    }
  }

  /** Pushes and tracks one delivery; false when the device is gone (closed or disconnected). */
  private push(id: string, d: Device, frame: MsgFrame): boolean {
    if (d.pending.size >= this.deps.maxPendingPerDevice) {
      this.disconnect(id, 'too_many_pending');
      return false;
    }
    const result = this.deps.router.push(d.session, frame);
    deliveryMetrics.pushed.inc();
    if (result === 'closed' || result === 'overflow') {
      // The socket is gone (and the gateway reports `closed`, which detaches it). Keep nothing.
      this.drop(id);
      return false;
    }
    const now = this.deps.clock.now();
    d.pending.add(frame, now, this.deps.deliveryRetryMs);
    this.arm(id, d);
    return true;
  }

  private onDack(m: UserDack): void {
    const d = this.devices.get(m.session.device);
    if (d !== undefined) {
      const now = this.deps.clock.now();
      const acked = d.pending.ack(m.conv, m.seq);
      for (const e of acked) deliveryMetrics.latency.observe((now - e.firstPushedAt) / 1000);
      if (acked.length > 0) deliveryMetrics.acked.inc(acked.length);
    }
    this.deps.router.tell('conv', m.conv, { t: 'delivered', session: m.session, seq: m.seq });
  }

  private onReceipt(m: UserReceipt): void {
    for (const [id, d] of this.devices) {
      // A read made on one of this user's devices is news for the others only.
      if (m.user === this.ctx.key && m.device === id) continue;
      const frame: ReceiptFrame = { t: 'receipt', conv: m.conv, kind: m.kind, user: m.user, seq: m.seq };
      if (m.kind === 'delivered') frame.device = m.device;
      const r = this.deps.router.push(d.session, frame);
      if (r === 'closed' || r === 'overflow') this.drop(id);
    }
  }

  private onRetry(id: string): void {
    const d = this.devices.get(id);
    if (d === undefined) return;
    d.timer = null;
    const now = this.deps.clock.now();
    const { deliveryRetryMs, deliveryMaxRetries } = this.deps;
    for (const e of d.pending.due(now)) {
      if (e.attempts > deliveryMaxRetries) {
        this.disconnect(id, 'max_retries');
        return;
      }
      deliveryMetrics.retries.inc();
      deliveryMetrics.pushed.inc();
      const r = this.deps.router.push(d.session, e.frame);
      if (r === 'closed' || r === 'overflow') {
        this.drop(id);
        return;
      }
      e.dueAt = now + deliveryRetryMs * 2 ** e.attempts;
      e.attempts++;
    }
    this.arm(id, d);
  }

  /** Keeps one timer per device, at its earliest due delivery. */
  private arm(id: string, d: Device): void {
    const at = d.pending.nextDue();
    if (at === null) {
      if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
      d.timer = null;
      return;
    }
    if (d.timer !== null && d.timerAt <= at) return;
    if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
    d.timerAt = at;
    d.timer = this.deps.clock.setTimer(Math.max(0, at - this.deps.clock.now()), () => this.ctx.self({ t: 'retry', device: id }));
  }

  /** Closes the device's session with 4001: it reconnects and syncs from its cursor. */
  private disconnect(id: string, reason: 'max_retries' | 'too_many_pending' | 'overloaded'): void {
    const d = this.devices.get(id);
    if (d === undefined) return;
    deliveryMetrics.gaveUp.inc({ reason });
    this.deps.log.info({ reason }, 'disconnecting a device to resync');
    this.deps.router.close(d.session, CLOSE.slowConsumer, CLOSE_REASONS[CLOSE.slowConsumer]);
    this.drop(id);
  }

  private drop(id: string): void {
    const d = this.devices.get(id);
    if (d === undefined) return;
    if (d.timer !== null) this.deps.clock.clearTimer(d.timer);
    d.pending.clear();
    this.devices.delete(id);
  }
}
