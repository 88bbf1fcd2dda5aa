import type { Registry } from 'prom-client';

/**
 * A Prometheus histogram for hot paths (an observation per delivery, per actor message).
 *
 * prom-client's Histogram allocates on every `observe` (a closure, a label/value pair, a label hash
 * string) and showed as 7-9% of a node's CPU in the group fan-out profile (bench/RESULTS.md). This
 * one keeps each series as a Float64Array of bucket counts plus sum and count, so an observation is
 * a bucket search and three additions. It registers in a prom-client Registry like any metric (the
 * registry only needs `name`, `get()` and `reset()`), and `get()` returns what a prom-client
 * Histogram returns for the same observations, so scrapes and the cross-thread merge
 * (src/metrics/threads.ts) cannot tell them apart (test/unit/fast-histogram.test.ts compares both).
 *
 * Labels: at most one label name, whose values must come from a closed set (every subsystem's rule);
 * a series is created on its first observation.
 */
export interface FastHistogramOptions<L extends string> {
  name: string;
  help: string;
  buckets: readonly number[];
  labelNames?: readonly [L] | readonly [];
  registers?: Registry[];
}

interface Series {
  labels: Record<string, string>;
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

interface ValuePair {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

export class FastHistogram<L extends string = never> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly bounds: Float64Array;
  private readonly label: L | null;
  private readonly series = new Map<string, Series>();

  constructor(o: FastHistogramOptions<L>) {
    const bounds = [...o.buckets].sort((a, b) => a - b);
    if (bounds.length === 0 || bounds.some((b, i) => !Number.isFinite(b) || (i > 0 && b === bounds[i - 1]))) {
      throw new Error(`histogram ${o.name}: buckets must be distinct finite numbers`);
    }
    this.name = o.name;
    this.help = o.help;
    this.bounds = Float64Array.from(bounds);
    this.label = o.labelNames?.[0] ?? null;
    for (const r of o.registers ?? []) r.registerMetric(this as never);
  }

  /** One observation: `observe(value)` without labels, `observe({ [label]: value }, value)` with one. */
  observe(labelsOrValue: Partial<Record<L, string>> | number, value?: number): void {
    let v: number;
    let key: string;
    if (typeof labelsOrValue === 'number') {
      v = labelsOrValue;
      key = '';
    } else {
      v = value!;
      key = this.label === null ? '' : (labelsOrValue[this.label] ?? '');
    }
    if (!Number.isFinite(v)) throw new TypeError(`${this.name}: value is not a valid number: ${v}`);
    let s = this.series.get(key);
    if (s === undefined) {
      s = { labels: this.label === null ? {} : { [this.label]: key }, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    const b = this.bounds;
    // Linear: the buckets are few and most observations land in the first ones.
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    s.counts[i]! += 1;
    s.sum += v;
    s.count += 1;
  }

  /** The metric in prom-client's JSON form (what Histogram#get returns). */
  get(): Promise<{ name: string; help: string; type: 'histogram'; values: ValuePair[]; aggregator: 'sum' }> {
    const values: ValuePair[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { le: this.bounds[i]!, ...s.labels }, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.series.clear();
  }
}
