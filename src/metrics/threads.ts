import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
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

let started: { thread: string } | undefined;

/**
 * The metrics every thread reports about itself, with a `thread` label (`main` or the shard index:
 * a closed set bounded by the shard count), so the merged scrape keeps one series per thread:
 *
 * - `ticks_eventloop_lag_seconds{thread}`: the 99th percentile of this thread's event-loop delay
 *   since the previous scrape (the histogram resets at each scrape, so a stall shows in the next
 *   scrape only).
 * - `ticks_thread_heap_used_bytes{thread}`, `ticks_thread_heap_total_bytes{thread}`,
 *   `ticks_thread_heap_limit_bytes{thread}` and `ticks_thread_external_memory_bytes{thread}`: this
 *   thread's V8 heap (every worker thread has its own isolate and heap; the default
 *   `nodejs_heap_*` metrics, collected in the main thread only, show the main thread's alone).
 *   Connections live on the shard threads' heaps.
 *
 * Idempotent per thread.
 */
export function startThreadMetrics(thread: string, reg: Registry = registry): void {
  if (started) return;
  started = { thread };
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
  const heapGauge = (name: string, help: string, pick: (s: ReturnType<typeof getHeapStatistics>) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['thread'] as const,
      registers: [reg],
      collect() {
        this.set({ thread }, pick(getHeapStatistics()));
      },
    });
  };
  heapGauge('ticks_thread_heap_used_bytes', 'V8 heap in use by a thread (its own isolate).', (s) => s.used_heap_size);
  heapGauge('ticks_thread_heap_total_bytes', 'V8 heap reserved by a thread (its own isolate).', (s) => s.total_heap_size);
  heapGauge('ticks_thread_heap_limit_bytes', 'V8 heap size limit of a thread.', (s) => s.heap_size_limit);
  heapGauge('ticks_thread_external_memory_bytes', 'Memory outside the V8 heap held by JS objects of a thread (ArrayBuffers, native handles).', (s) => s.external_memory);
}
