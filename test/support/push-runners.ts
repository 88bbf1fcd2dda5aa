/**
 * Job runners for the push and flush tests: memory (one shared backend, like one process) and BullMQ
 * on the run's Redis under a key prefix unique to the file. `node()` gives one more runner, standing
 * for another node of the cluster.
 */
import { Redis } from 'ioredis';
import { BullmqJobRunner } from '../../src/jobs/bullmq-runner.js';
import { MemoryJobBackend, MemoryJobRunner } from '../../src/jobs/memory-runner.js';
import type { JobRunner } from '../../src/jobs/runner.js';
import { requireRedisUrl, uniqueRedisPrefix } from './env.js';

export interface RunnerCluster {
  name: 'memory' | 'redis';
  node(): JobRunner;
  /**
   * Redis only: the server-side times (ms, from the stream entry ids) at which BullMQ moved jobs of
   * `queue` to active, read from the queue's events stream: when a rate-limited job was granted,
   * independent of how late any client process noticed.
   */
  activeTimes?(queue: string): Promise<number[]>;
  cleanup(): Promise<void>;
}

export function memoryCluster(): RunnerCluster {
  const backend = new MemoryJobBackend();
  const runners: JobRunner[] = [];
  return {
    name: 'memory',
    node() {
      const r = new MemoryJobRunner({ backend });
      runners.push(r);
      return r;
    },
    cleanup: async () => {
      await Promise.all(runners.map((r) => r.close()));
    },
  };
}

export function redisCluster(suffix: string): RunnerCluster {
  const url = requireRedisUrl();
  const prefix = uniqueRedisPrefix(suffix).replace(/:$/, '');
  const runners: JobRunner[] = [];
  return {
    name: 'redis',
    node() {
      const r = new BullmqJobRunner({ url, prefix, name: `test-${suffix}` });
      runners.push(r);
      return r;
    },
    async activeTimes(queue) {
      const admin = new Redis(url);
      try {
        const entries = await admin.xrange(`${prefix}:${queue}:events`, '-', '+');
        return entries.filter(([, fields]) => fields[0] === 'event' && fields[1] === 'active').map(([id]) => Number(id.split('-')[0]));
      } finally {
        admin.disconnect();
      }
    },
    async cleanup() {
      await Promise.all(runners.map((r) => r.close()));
      const admin = new Redis(url);
      try {
        const keys = await admin.keys(`${prefix}:*`);
        if (keys.length > 0) await admin.del(...keys);
      } finally {
        admin.disconnect();
      }
    },
  };
}
