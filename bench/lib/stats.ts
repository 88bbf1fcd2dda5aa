/**
 * Small helpers shared by benchmarks: HDR latency histograms (microseconds), medians of repeated
 * runs, and a machine description for bench/RESULTS.md.
 */
import { cpus, totalmem, release } from 'node:os';
import * as hdr from 'hdr-histogram-js';

export interface Latency {
  record(us: number): void;
  summary(): { count: number; p50: number; p99: number; p999: number; max: number };
}

export function latency(): Latency {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  return {
    record: (us) => h.recordValue(Math.max(1, Math.round(us))),
    summary: () => ({
      count: h.totalCount,
      p50: h.getValueAtPercentile(50),
      p99: h.getValueAtPercentile(99),
      p999: h.getValueAtPercentile(99.9),
      max: h.maxValue,
    }),
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function machine(): string {
  const c = cpus();
  return `${c.length} x ${c[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`;
}

/** Runs `fn` with at most `concurrency` in flight over `count` items. */
export async function pool(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) await fn(next++);
  });
  await Promise.all(workers);
}
