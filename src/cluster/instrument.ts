import { Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { ClusterError } from './errors.js';

export type ClusterImpl = 'memory' | 'redis';

/**
 * An operation-duration histogram `<name>{op,impl,result}` and the function that runs one operation
 * through it: it records the duration and outcome (ok or the error code) and guarantees that whatever
 * the operation throws is a ClusterError (anything else goes through `wrap`, the implementation's
 * error mapper).
 */
export function opInstrument<Op extends string>(name: string, help: string) {
  const opDuration = new Histogram({
    name,
    help,
    labelNames: ['op', 'impl', 'result'] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return async function instrument<T>(
    impl: ClusterImpl,
    op: Op,
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
  };
}
