import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { StoreError } from './errors.js';

export type StoreOp =
  | 'open'
  | 'create_conversation'
  | 'get_conversation'
  | 'update_conversation_meta'
  | 'put_member'
  | 'remove_member'
  | 'get_member'
  | 'list_members'
  | 'list_user_conversations'
  | 'list_departures'
  | 'sweep_departures'
  | 'open_writer'
  | 'append'
  | 'read_forward'
  | 'read_backward'
  | 'head'
  | 'trim_expired'
  | 'retained_from'
  | 'advance_delivered'
  | 'get_delivered'
  | 'advance_read'
  | 'get_read'
  | 'put_device'
  | 'set_push_token'
  | 'list_devices'
  | 'remove_device';

const opDuration = new Histogram({
  name: 'ticks_store_op_duration_seconds',
  help: 'Duration of store operations by operation, engine and result (ok or the error code).',
  labelNames: ['op', 'engine', 'result'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

const errors = new Counter({
  name: 'ticks_store_errors_total',
  help: 'Store operations that failed, by operation, engine and error code.',
  labelNames: ['op', 'engine', 'code'] as const,
  registers: [registry],
});

/** Rows dropped by retention that the engine itself removes (scylla rows expire by TTL, uncounted). */
export const storeRetentionMetrics = {
  departuresPruned: new Counter({
    name: 'ticks_store_departures_pruned_total',
    help: 'Departures removed by the embedded engine\'s sweep after retention.departuresS (scylla rows expire by TTL and are not counted).',
    registers: [registry],
  }),
};

/**
 * Runs one store operation, records its duration and outcome, and guarantees that whatever it throws
 * is a StoreError (anything else is wrapped by `wrap`, the engine's driver-error mapper).
 */
export async function instrument<T>(
  engine: 'embedded' | 'scylla',
  op: StoreOp,
  wrap: (err: unknown) => StoreError,
  fn: () => Promise<T>,
): Promise<T> {
  const end = opDuration.startTimer({ op, engine });
  try {
    const out = await fn();
    end({ result: 'ok' });
    return out;
  } catch (err) {
    const e = err instanceof StoreError ? err : wrap(err);
    end({ result: e.code });
    errors.inc({ op, engine, code: e.code });
    throw e;
  }
}
