import { ClusterError } from '../errors.js';
import {
  assertNodeId,
  publishToEach,
  nodeChannel,
  type Bus,
  type BusPurpose,
  type BusSubscription,
  type FrameHandler,
} from './bus.js';
import { BusMetrics, publishResult, reportHandlerError } from './metrics.js';

/**
 * The in-process bus: single-node mode (no Redis) and tests that run several "nodes" in one
 * process. Every MemoryBus built over one MemoryBusHub sees the same channels, as nodes sharing one
 * Redis do. Same contract as the Redis bus (bus.ts): delivery is asynchronous (never inside
 * publish), bytes are copied so a sender reusing its buffer cannot change a delivered frame, and a
 * frame is dropped if its subscriber is gone by the time it is delivered.
 */
export interface MemoryBusHubOptions {
  /**
   * Frames accepted but not yet handed to their handlers, over all buses of the hub. When full, a
   * publish rejects with `cluster.unavailable` (retryable), the in-memory counterpart of Redis
   * cutting off a subscriber whose output buffer overflowed. Default 100,000.
   */
  maxQueuedFrames?: number;
}

interface Sub {
  readonly handler: FrameHandler;
  readonly bus: MemoryBus;
  active: boolean;
}

interface Queued {
  readonly sub: Sub;
  readonly bytes: Uint8Array;
}

export class MemoryBusHub {
  private readonly channels = new Map<string, Set<Sub>>();
  private queue: Queued[] = [];
  private drainScheduled = false;
  private reachable = true;
  private readonly maxQueuedFrames: number;

  constructor(opts: MemoryBusHubOptions = {}) {
    this.maxQueuedFrames = opts.maxQueuedFrames ?? 100_000;
  }

  /**
   * Fault injection: while unreachable, every publish and subscribe rejects with
   * `cluster.unavailable`, as when Redis is down. Queued frames are still delivered.
   */
  setReachable(reachable: boolean): void {
    this.reachable = reachable;
  }

  /** @internal */
  checkReachable(): void {
    if (!this.reachable) throw new ClusterError('cluster.unavailable', 'memory bus hub is unreachable');
  }

  /** @internal */
  add(channel: string, sub: Sub): void {
    let subs = this.channels.get(channel);
    if (subs === undefined) this.channels.set(channel, (subs = new Set()));
    subs.add(sub);
  }

  /** @internal */
  remove(channel: string, sub: Sub): void {
    sub.active = false;
    const subs = this.channels.get(channel);
    if (subs === undefined) return;
    subs.delete(sub);
    if (subs.size === 0) this.channels.delete(channel);
  }

  /** @internal Queues one copy of `bytes` per subscriber of `channel`; returns the receiver count. */
  deliver(channel: string, bytes: Uint8Array): number {
    this.checkReachable();
    const subs = this.channels.get(channel);
    if (subs === undefined) return 0;
    if (this.queue.length + subs.size > this.maxQueuedFrames) {
      throw new ClusterError(
        'cluster.unavailable',
        `memory bus queue is full (${this.maxQueuedFrames} frames): subscribers are not keeping up`,
      );
    }
    for (const sub of subs) this.queue.push({ sub, bytes: bytes.slice() });
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(() => this.drain());
    }
    return subs.size;
  }

  private drain(): void {
    this.drainScheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const { sub, bytes } of batch) {
      if (sub.active) sub.bus.handOver(sub.handler, bytes);
    }
  }
}

export interface MemoryBusOptions {
  purpose?: BusPurpose;
  onHandlerError?: (err: unknown) => void;
}

export class MemoryBus implements Bus {
  private readonly purpose: BusPurpose;
  private readonly metrics: BusMetrics;
  private readonly onHandlerError: (err: unknown) => void;
  private readonly subs = new Map<string, Sub>();
  private closed = false;

  constructor(
    private readonly hub: MemoryBusHub,
    opts: MemoryBusOptions = {},
  ) {
    this.purpose = opts.purpose ?? 'frames';
    this.metrics = new BusMetrics(this.purpose);
    this.onHandlerError = opts.onHandlerError ?? reportHandlerError;
  }

  async subscribe(node: string, onFrame: FrameHandler): Promise<BusSubscription> {
    assertNodeId(node);
    this.checkOpen();
    this.hub.checkReachable();
    if (this.subs.has(node)) throw new ClusterError('cluster.invalid', `node ${node} already has a handler on this bus`);
    const sub: Sub = { handler: onFrame, bus: this, active: true };
    this.subs.set(node, sub);
    const channel = this.channel(node);
    this.hub.add(channel, sub);
    return {
      node,
      unsubscribe: async () => {
        if (this.subs.get(node) === sub) this.subs.delete(node);
        this.hub.remove(channel, sub);
      },
    };
  }

  async publish(targetNode: string, bytes: Uint8Array): Promise<number> {
    assertNodeId(targetNode);
    if (this.closed) {
      this.metrics.refused('cluster.unavailable');
      throw new ClusterError('cluster.unavailable', 'bus is closed');
    }
    const done = this.metrics.startPublish();
    try {
      const receivers = this.hub.deliver(this.channel(targetNode), bytes);
      done(publishResult(receivers), bytes.byteLength);
      return receivers;
    } catch (err) {
      const e = err instanceof ClusterError ? err : new ClusterError('cluster.internal', String(err), err);
      done(e.code, bytes.byteLength);
      throw e;
    }
  }

  publishMany(targets: Iterable<string>, bytes: Uint8Array): Promise<Map<string, number>> {
    return publishToEach(targets, (n) => this.publish(n, bytes));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [node, sub] of this.subs) this.hub.remove(this.channel(node), sub);
    this.subs.clear();
  }

  /** @internal Called by the hub for each delivered frame. */
  handOver(handler: FrameHandler, bytes: Uint8Array): void {
    this.metrics.received(bytes.byteLength);
    try {
      handler(bytes);
    } catch (err) {
      this.onHandlerError(err);
    }
  }

  private channel(node: string): string {
    return nodeChannel('', this.purpose, node);
  }

  private checkOpen(): void {
    if (this.closed) throw new ClusterError('cluster.unavailable', 'bus is closed');
  }
}
