import { Counter, Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import type { ClusterErrorCode } from '../errors.js';
import type { BusPurpose } from './bus.js';

/**
 * Bus metrics, shared by the memory and Redis buses. Labels are closed sets: `bus` is a BusPurpose,
 * `result` is `ok`, `no_receivers`, `queue_full` or a ClusterErrorCode, `direction` is `out` or `in`.
 */
export type PublishResult = 'ok' | 'no_receivers' | 'queue_full' | ClusterErrorCode;

const published = new Counter({
  name: 'ticks_bus_published_total',
  help: 'Frames published to one node, by bus and result (ok, no_receivers, queue_full or an error code).',
  labelNames: ['bus', 'result'] as const,
  registers: [registry],
});

const received = new Counter({
  name: 'ticks_bus_received_total',
  help: 'Frames received from the bus and handed to the local handler, by bus.',
  labelNames: ['bus'] as const,
  registers: [registry],
});

const publishDuration = new Histogram({
  name: 'ticks_bus_publish_duration_seconds',
  help: 'Time from publish to the transport accepting the frame (or failing), by bus.',
  labelNames: ['bus'] as const,
  buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

const bytesTotal = new Counter({
  name: 'ticks_bus_bytes_total',
  help: 'Frame payload bytes through the bus, by bus and direction (out: accepted publishes, in: received).',
  labelNames: ['bus', 'direction'] as const,
  registers: [registry],
});

const batches = new Counter({
  name: 'ticks_bus_write_batches_total',
  help: 'Batches of several publishes the bus wrote together (one event-loop turn, one socket write), by bus.',
  labelNames: ['bus'] as const,
  registers: [registry],
});

const batchedFrames = new Counter({
  name: 'ticks_bus_batched_frames_total',
  help: 'Frames published inside a batch of several (see ticks_bus_write_batches_total), by bus.',
  labelNames: ['bus'] as const,
  registers: [registry],
});

export class BusMetrics {
  constructor(private readonly bus: BusPurpose) {}

  startPublish(): (result: PublishResult, bytes: number) => void {
    const end = publishDuration.startTimer({ bus: this.bus });
    return (result, bytes) => {
      end();
      published.inc({ bus: this.bus, result });
      if (result === 'ok' || result === 'no_receivers') bytesTotal.inc({ bus: this.bus, direction: 'out' }, bytes);
    };
  }

  /** A publish refused before reaching the transport (bounded queue full, bus closed). */
  refused(result: PublishResult): void {
    published.inc({ bus: this.bus, result });
  }

  /** `frames` publishes went out in one socket write. */
  batched(frames: number): void {
    batches.inc({ bus: this.bus });
    batchedFrames.inc({ bus: this.bus }, frames);
  }

  received(bytes: number): void {
    received.inc({ bus: this.bus });
    bytesTotal.inc({ bus: this.bus, direction: 'in' }, bytes);
  }
}

export function publishResult(receivers: number): PublishResult {
  return receivers > 0 ? 'ok' : 'no_receivers';
}

/** The default `onHandlerError`: a handler bug must be visible but must not stop the subscriber. */
export function reportHandlerError(err: unknown): void {
  process.emitWarning(`bus frame handler threw: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
}
