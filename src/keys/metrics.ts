import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { isTicksError } from '../lib/errors.js';

export type KeyOp = 'publish' | 'fetch_bundle' | 'fetch_bundles' | 'count' | 'remove_device';

const opDuration = new Histogram({
  name: 'ticks_keys_op_duration_seconds',
  help: 'Duration of prekey directory operations by operation, engine and result (ok or the error code).',
  labelNames: ['op', 'engine', 'result'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

/** One-time prekeys handed out, and bundles handed out without one (the device ran out). */
export const bundlesServed = new Counter({
  name: 'ticks_keys_bundles_served_total',
  help: 'Prekey bundles handed out, by whether they carried a one-time prekey (with or without).',
  labelNames: ['one_time'] as const,
  registers: [registry],
});

/** Claims of a one-time prekey that another fetch won first (scylla; the fetch then tries another). */
export const claimConflicts = new Counter({
  name: 'ticks_keys_claim_conflicts_total',
  help: 'One-time prekey claims lost to a concurrent fetch (the fetch retried with another key).',
  registers: [registry],
});

export const lowSignals = new Counter({
  name: 'ticks_keys_low_signals_total',
  help: 'Times a device was told to upload more one-time prekeys (its count fell below keys.lowThreshold).',
  registers: [registry],
});

export const httpRequests = new Counter({
  name: 'ticks_keys_http_requests_total',
  help: 'HTTP requests to the prekey endpoints by route and status code.',
  labelNames: ['route', 'status'] as const,
  registers: [registry],
});

export async function measure<T>(op: KeyOp, engine: 'embedded' | 'scylla', fn: () => Promise<T>): Promise<T> {
  const end = opDuration.startTimer({ op, engine });
  try {
    const out = await fn();
    end({ result: 'ok' });
    return out;
  } catch (err) {
    end({ result: isTicksError(err) ? err.code : 'internal' });
    throw err;
  }
}

export const fetchLimited = new Counter({
  name: 'ticks_keys_fetch_limited_total',
  help: 'Prekey bundle fetches refused with 429 because the requesting user exceeded keys.fetchPerMinute.',
  registers: [registry],
});

export const lowPushes = new Counter({
  name: 'ticks_keys_low_frames_total',
  help: 'keys.low frames for devices whose one-time prekeys ran low: pushed to a live session, offline (no session), suppressed (one was sent recently) or error (session lookup failed).',
  labelNames: ['result'] as const,
  registers: [registry],
});
