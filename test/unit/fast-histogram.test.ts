import t from 'tap';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../../src/metrics/fast-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.5, 1, 2, 1e9, 0.1];

t.test('scrapes exactly like a prom-client Histogram fed the same observations', async (t) => {
  const a = new Registry();
  const b = new Registry();
  const fast = new FastHistogram({ name: 'ticks_test_a_seconds', help: 'h', buckets: BUCKETS, registers: [a] });
  const slow = new Histogram({ name: 'ticks_test_a_seconds', help: 'h', buckets: BUCKETS, registers: [b] });
  for (const v of VALUES) {
    fast.observe(v);
    slow.observe(v);
  }
  t.equal(await a.metrics(), await b.metrics(), 'text exposition identical');
  t.match(await a.metrics(), /ticks_test_a_seconds_bucket\{le="0.01"\} 5\n/, 'cumulative buckets (0, 0.0005, 0.001, 0.002, 0.01)');
  t.match(await a.metrics(), /ticks_test_a_seconds_count 11\n/);
});

t.test('one label: a series per value, identical to prom-client, and merged across threads', async (t) => {
  const regs = [new Registry(), new Registry()];
  const slowRegs = [new Registry(), new Registry()];
  for (let i = 0; i < 2; i++) {
    const fast = new FastHistogram({ name: 'ticks_test_b_seconds', help: 'h', buckets: BUCKETS, labelNames: ['kind'] as const, registers: [regs[i]!] });
    const slow = new Histogram({ name: 'ticks_test_b_seconds', help: 'h', buckets: BUCKETS, labelNames: ['kind'] as const, registers: [slowRegs[i]!] });
    for (const v of VALUES) {
      const kind = v > 0.01 ? 'user' : 'conv';
      fast.observe({ kind }, v * (i + 1));
      slow.observe({ kind }, v * (i + 1));
    }
  }
  t.equal(await regs[0]!.metrics(), await slowRegs[0]!.metrics(), 'text exposition identical');
  const merged = await AggregatorRegistry.aggregate(await Promise.all(regs.map((r) => r.getMetricsAsJSON()))).metrics();
  const mergedSlow = await AggregatorRegistry.aggregate(await Promise.all(slowRegs.map((r) => r.getMetricsAsJSON()))).metrics();
  t.equal(merged, mergedSlow, 'the cross-thread merge is identical too');
  t.match(merged, /ticks_test_b_seconds_count\{kind="conv"\} 10\n/, 'both threads counted');
});

t.test('bad input is refused, reset empties', async (t) => {
  const r = new Registry();
  const h = new FastHistogram({ name: 'ticks_test_c_bytes', help: 'h', buckets: [1, 2], registers: [r] });
  t.throws(() => h.observe(Number.NaN), /not a valid number/);
  t.throws(() => new FastHistogram({ name: 'x', help: 'h', buckets: [] }), /buckets/);
  t.throws(() => new FastHistogram({ name: 'x', help: 'h', buckets: [1, 1] }), /buckets/);
  h.observe(1.5);
  t.match(await r.metrics(), /ticks_test_c_bytes_count 1/);
  h.reset();
  t.notMatch(await r.metrics(), /ticks_test_c_bytes_count/);
});
