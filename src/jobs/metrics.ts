import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';
import type { JobCounts, JobQueue } from './runner.js';

/**
 * Job metrics. Labels: `queue` is a queue name fixed in code (push, flush), `impl` memory or redis,
 * `result` from the closed sets below.
 */
export const jobMetrics = {
  enqueued: new Counter({
    name: 'ticks_jobs_enqueued_total',
    help: 'Jobs offered to a queue, by queue and result (added, duplicate: an existing job id, error).',
    labelNames: ['queue', 'impl', 'result'] as const,
    registers: [registry],
  }),
  runs: new Counter({
    name: 'ticks_jobs_runs_total',
    help: 'Job attempts, by queue and result (completed, retry: failed and will be retried, failed: no attempts left or permanent).',
    labelNames: ['queue', 'impl', 'result'] as const,
    registers: [registry],
  }),
  duration: new Histogram({
    name: 'ticks_jobs_run_duration_seconds',
    help: 'Duration of one job attempt, by queue and result.',
    labelNames: ['queue', 'impl', 'result'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
};

export type RunResult = 'completed' | 'retry' | 'failed';

/** The queues this thread reports the depth of (the latest queue object per name). */
const depthSources = new Map<string, { impl: string; queue: JobQueue<unknown> }>();

/** Keyed by impl and name: the latest queue object of each. */
const keyOf = (impl: string, name: string) => `${impl}/${name}`;
const DEPTH_TIMEOUT_MS = 1000;

export function reportDepth(impl: string, queue: JobQueue<unknown>): void {
  depthSources.set(keyOf(impl, queue.name), { impl, queue });
}

export function forgetDepth(impl: string, queue: JobQueue<unknown>): void {
  const key = keyOf(impl, queue.name);
  if (depthSources.get(key)?.queue === queue) depthSources.delete(key);
}

/**
 * Two gauges because shard threads' metrics are merged per node: a Redis queue's depth is
 * cluster-wide and every thread reads the same numbers (merged with max), while each thread's memory
 * runner has queues of its own (merged with sum).
 */
function depthGauge(name: string, help: string, impl: 'memory' | 'redis', aggregator: 'max' | 'sum'): void {
  new Gauge({
    name,
    help,
    labelNames: ['queue', 'state'] as const,
    aggregator,
    registers: [registry],
    async collect() {
      this.reset();
      await Promise.all(
        [...depthSources.values()]
          .filter((s) => s.impl === impl)
          .map(async ({ queue }) => {
            let timer: NodeJS.Timeout | undefined;
            const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), DEPTH_TIMEOUT_MS)));
            const counts: JobCounts | null = await Promise.race([queue.counts().catch(() => null), timeout]);
            clearTimeout(timer);
            // A queue whose counts cannot be read now (Redis down) is left out of this scrape.
            if (counts === null) return;
            for (const state of ['waiting', 'delayed', 'active', 'failed'] as const) {
              this.set({ queue: queue.name, state }, counts[state]);
            }
          }),
      );
    },
  });
}

depthGauge(
  'ticks_jobs_queue_depth',
  'Jobs in a cluster (BullMQ) queue by state (waiting, delayed, active, failed), cluster-wide, read at scrape time.',
  'redis',
  'max',
);
depthGauge(
  'ticks_jobs_local_queue_depth',
  'Jobs in the embedded (memory) queues of this node by state (waiting, delayed, active, failed), read at scrape time.',
  'memory',
  'sum',
);
