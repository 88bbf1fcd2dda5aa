import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AggregatorRegistry, Gauge, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import { registry } from './registry.js';

/**
 * Metrics across threads. Every thread (main and each shard) has its own `registry`
 * (src/metrics/registry.ts). For a scrape, each shard posts `registry.getMetricsAsJSON()` to the
 * main thread, which merges those with its own with `AggregatorRegistry.aggregate`: series with the
 * same name and labels are combined by the metric's `aggregator` (sum unless the metric says
 * otherwise), so a counter that two shards both increment shows their total. Default process
 * metrics are collected in the main thread only (src/metrics/node.ts); collected in every thread
 * they would be counted once per thread.
 */
export type ThreadMetrics = MetricObjectWithValues<MetricValue<string>>[];

export function threadMetrics(reg: Registry = registry): Promise<ThreadMetrics> {
  return reg.getMetricsAsJSON() as Promise<ThreadMetrics>;
}

/** One Prometheus text exposition of all threads' metrics. */
export function mergeThreadMetrics(perThread: readonly ThreadMetrics[]): Promise<string> {
  return AggregatorRegistry.aggregate([...perThread]).metrics();
}

export const METRICS_CONTENT_TYPE: string = registry.contentType;

let lag: { thread: string } | undefined;

/**
 * `ticks_eventloop_lag_seconds{thread}`: the 99th percentile of this thread's event-loop delay since
 * the previous scrape (the histogram resets at each scrape, so a stall shows in the next scrape
 * only). The `thread` label is `main` or the shard index: bounded by the shard count. Idempotent
 * per thread.
 */
export function startEventLoopLag(thread: string, reg: Registry = registry): void {
  if (lag) return;
  lag = { thread };
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  new Gauge({
    name: 'ticks_eventloop_lag_seconds',
    help: 'p99 event-loop delay of a thread since the previous scrape.',
    labelNames: ['thread'] as const,
    registers: [reg],
    collect() {
      // Before the first sample the histogram reports NaN/huge values; show 0 instead.
      const p99 = h.count > 0 ? h.percentile(99) / 1e9 : 0;
      this.set({ thread }, p99);
      h.reset();
    },
  });
}
