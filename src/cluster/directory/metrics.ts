import { Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import { ClusterError } from '../errors.js';

export type DirectoryOp = 'register' | 'renew' | 'renew_many' | 'unregister' | 'lookup';

const opDuration = new Histogram({
  name: 'ticks_directory_op_duration_seconds',
  help: 'Duration of directory operations by operation, implementation and result (ok or the error code).',
  labelNames: ['op', 'impl', 'result'] as const,
  buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

/**
 * Runs one directory operation, records its duration and outcome, and guarantees that whatever it
 * throws is a ClusterError (anything else goes through `wrap`, the implementation's error mapper).
 */
export async function instrument<T>(
  impl: 'memory' | 'redis',
  op: DirectoryOp,
  wrap: (err: unknown) => ClusterError,
  fn: () => Promise<T>,
): Promise<T> {
  const end = opDuration.startTimer({ op, impl });
  try {
    const out = await fn();
    end({ result: 'ok' });
    return out;
  } catch (err) {
    const e = err instanceof ClusterError ? err : wrap(err);
    end({ result: e.code });
    throw e;
  }
}
