import type { Redis } from 'ioredis';
import { ClusterError } from '../errors.js';
import { createRedis, wrapRedisError } from '../redis-client.js';
import {
  DEFAULT_MAX_PENDING_PUBLISHES,
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
 * The bus over Redis pub/sub (contract in bus.ts). Channel of a node: `<keyPrefix>node:<nodeId>`
 * (frames) or `<keyPrefix>presence:node:<nodeId>` (presence events); ioredis applies keyPrefix to
 * keys only, so the prefix is added here.
 *
 * Two connections: one publishes, one subscribes (created on the first subscribe). Keeping them
 * apart means a burst of incoming frames never delays a publish's reply, and the subscriber's
 * reconnects (ioredis re-subscribes on its own) never stall publishing. Frames go out as Buffers
 * and arrive through `messageBuffer`, so no byte is ever decoded as text.
 *
 * Bounded queue: at most `maxPendingPublishes` publishes await a reply at any time. While Redis is
 * unreachable they sit in ioredis's offline queue and fail with `cluster.unavailable` after one
 * failed reconnect (redis-client.ts); once the bound is reached further publishes are refused at
 * once with `cluster.unavailable` (retryable) and counted as `queue_full`.
 *
 * Publishes of one event-loop turn are written together, on a corked socket (see enqueue): under
 * load, a shard's fan-out frames and forwarded dacks cost one socket write per turn, not one each.
 *
 * The bus may read `bytes` until publish settles; msgpackr never rewrites bytes it returned.
 */
export interface RedisBusOptions {
  url: string;
  /** Prefix of every channel, e.g. `ticks:prod:`; the same prefix as the cluster's keys. */
  keyPrefix: string;
  purpose?: BusPurpose;
  /** Default DEFAULT_MAX_PENDING_PUBLISHES (10,000). */
  maxPendingPublishes?: number;
  onHandlerError?: (err: unknown) => void;
}

interface Sub {
  readonly node: string;
  readonly handler: FrameHandler;
}

export class RedisBus implements Bus {
  private readonly purpose: BusPurpose;
  private readonly metrics: BusMetrics;
  private readonly maxPending: number;
  private readonly onHandlerError: (err: unknown) => void;
  private readonly pub: Redis;
  private sub: Redis | undefined;
  /** channel → handler; a frame on a channel not in here (just unsubscribed) is dropped. */
  private readonly byChannel = new Map<string, Sub>();
  private pending = 0;
  /** Publishes of the current event-loop turn, written together at its end (see enqueue). */
  private batch: { channel: string; buf: Buffer; resolve: (receivers: number) => void; reject: (err: unknown) => void }[] | null = null;
  private closed = false;

  constructor(private readonly opts: RedisBusOptions) {
    this.purpose = opts.purpose ?? 'frames';
    this.metrics = new BusMetrics(this.purpose);
    this.maxPending = opts.maxPendingPublishes ?? DEFAULT_MAX_PENDING_PUBLISHES;
    this.onHandlerError = opts.onHandlerError ?? reportHandlerError;
    this.pub = createRedis({ url: opts.url, keyPrefix: opts.keyPrefix, name: this.connectionName('') });
  }

  async subscribe(node: string, onFrame: FrameHandler): Promise<BusSubscription> {
    assertNodeId(node);
    this.checkOpen();
    const channel = this.channel(node);
    if (this.byChannel.has(channel)) {
      throw new ClusterError('cluster.invalid', `node ${node} already has a handler on this bus`);
    }
    const entry: Sub = { node, handler: onFrame };
    this.byChannel.set(channel, entry);
    try {
      await this.subscriber().subscribe(channel);
    } catch (err) {
      if (this.byChannel.get(channel) === entry) this.byChannel.delete(channel);
      throw wrapRedisError(err);
    }
    return {
      node,
      unsubscribe: async () => {
        if (this.byChannel.get(channel) !== entry) return;
        // Delivery stops now, whatever Redis answers: a frame still in flight is dropped.
        this.byChannel.delete(channel);
        if (this.closed || this.sub === undefined) return;
        try {
          await this.sub.unsubscribe(channel);
        } catch (err) {
          throw wrapRedisError(err);
        }
      },
    };
  }

  async publish(targetNode: string, bytes: Uint8Array): Promise<number> {
    assertNodeId(targetNode);
    if (this.closed) {
      this.metrics.refused('cluster.unavailable');
      throw new ClusterError('cluster.unavailable', 'bus is closed');
    }
    if (this.pending >= this.maxPending) {
      this.metrics.refused('queue_full');
      throw new ClusterError(
        'cluster.unavailable',
        `bus has ${this.pending} publishes awaiting Redis (limit ${this.maxPending}); Redis is slow or unreachable`,
      );
    }
    const done = this.metrics.startPublish();
    this.pending++;
    try {
      const receivers = await this.enqueue(this.channel(targetNode), asBuffer(bytes));
      done(publishResult(receivers), bytes.byteLength);
      return receivers;
    } catch (err) {
      const e = wrapRedisError(err);
      done(e.code, bytes.byteLength);
      throw e;
    } finally {
      this.pending--;
    }
  }

  publishMany(targets: Iterable<string>, bytes: Uint8Array): Promise<Map<string, number>> {
    return publishToEach(targets, (n) => this.publish(n, bytes));
  }

  /**
   * Publishes issued in one event-loop turn go out together: plain PUBLISH commands written to a
   * corked socket, so several cost one writev(). Order is kept: batches are written in turn order,
   * each in issue order, on the one publishing connection.
   */
  private enqueue(channel: string, buf: Buffer): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.batch === null) {
        this.batch = [];
        setImmediate(() => this.flush());
      }
      this.batch.push({ channel, buf, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = null;
    if (batch === null || batch.length === 0) return;
    if (batch.length === 1) {
      const one = batch[0]!;
      this.pub.publish(one.channel, one.buf).then(one.resolve, one.reject);
      return;
    }
    this.metrics.batched(batch.length);
    // Corking the socket makes the batch one writev() without ioredis's Pipeline machinery (which
    // costs more JavaScript than it saves in syscalls at these batch sizes).
    const stream = this.pub.status === 'ready' ? this.pub.stream : null;
    stream?.cork();
    try {
      for (const x of batch) this.pub.publish(x.channel, x.buf).then(x.resolve, x.reject);
    } finally {
      stream?.uncork();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Publishes accepted before close go out before QUIT.
    this.flush();
    this.byChannel.clear();
    await Promise.all([closeRedis(this.pub), this.sub ? closeRedis(this.sub) : undefined]);
  }

  private subscriber(): Redis {
    if (this.sub === undefined) {
      const sub = createRedis({ url: this.opts.url, keyPrefix: this.opts.keyPrefix, name: this.connectionName('-sub') });
      sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
      this.sub = sub;
    }
    return this.sub;
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    const entry = this.byChannel.get(channel.toString());
    if (entry === undefined) return;
    this.metrics.received(message.byteLength);
    try {
      entry.handler(message);
    } catch (err) {
      this.onHandlerError(err);
    }
  }

  private channel(node: string): string {
    return nodeChannel(this.opts.keyPrefix, this.purpose, node);
  }

  private connectionName(suffix: string): string {
    return (this.purpose === 'frames' ? 'bus' : 'presence-bus') + suffix;
  }

  private checkOpen(): void {
    if (this.closed) throw new ClusterError('cluster.unavailable', 'bus is closed');
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** QUIT lets accepted publishes finish; a connection that is not up is simply dropped. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    try {
      await redis.quit();
      return;
    } catch {
      // Fall through: the socket is going away either way.
    }
  }
  redis.disconnect();
}
