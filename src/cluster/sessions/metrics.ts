import { Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import { ClusterError } from '../errors.js';

export type SessionsOp = 'put' | 'remove' | 'refresh' | 'list';

const opDuration = new Histogram({
  name: 'ticks_sessions_op_duration_seconds',
  help: 'Duration of session registry operations by operation, implementation and result (ok or the error code).',
  labelNames: ['op', 'impl', 'result'] as const,
  buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

/** Like the directory's: times one operation and makes sure only ClusterErrors escape. */
export async function instrument<T>(
  impl: 'memory' | 'redis',
  op: SessionsOp,
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
