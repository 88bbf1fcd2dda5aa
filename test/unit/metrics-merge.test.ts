import { Counter, Gauge, Registry } from 'prom-client';
import t from 'tap';
import { mergeThreadMetrics, startThreadMetrics, threadMetrics } from '../../src/metrics/threads.js';

function shardRegistry(opened: number, connections: number): Registry {
  const reg = new Registry();
  new Counter({ name: 'ticks_gateway_connections_total', help: 'h', labelNames: ['result'], registers: [reg] }).inc({ result: 'opened' }, opened);
  new Gauge({ name: 'ticks_gateway_connections', help: 'h', registers: [reg] }).set(connections);
  return reg;
}

t.test('counters and gauges of several threads are summed into one scrape', async (t) => {
  const text = await mergeThreadMetrics([await threadMetrics(shardRegistry(3, 2)), await threadMetrics(shardRegistry(4, 1))]);
  t.match(text, /^ticks_gateway_connections_total\{result="opened"\} 7$/m);
  t.match(text, /^ticks_gateway_connections 3$/m);
  t.equal(text.match(/^# TYPE ticks_gateway_connections_total counter$/gm)?.length, 1, 'one family, not one per thread');
});

t.test('a metric only one thread has passes through; distinct labels stay apart', async (t) => {
  const a = new Registry();
  const b = new Registry();
  new Gauge({ name: 'ticks_x', help: 'h', labelNames: ['thread'], registers: [a] }).set({ thread: '0' }, 1);
  new Gauge({ name: 'ticks_x', help: 'h', labelNames: ['thread'], registers: [b] }).set({ thread: '1' }, 2);
  new Counter({ name: 'ticks_only_b_total', help: 'h', registers: [b] }).inc(5);
  const text = await mergeThreadMetrics([await threadMetrics(a), await threadMetrics(b)]);
  t.match(text, /^ticks_x\{thread="0"\} 1$/m);
  t.match(text, /^ticks_x\{thread="1"\} 2$/m);
  t.match(text, /^ticks_only_b_total 5$/m);
});

t.test('the event-loop lag gauge is labelled with the thread and reads as seconds', async (t) => {
  const reg = new Registry();
  startThreadMetrics('7', reg);
  const until = Date.now() + 30;
  while (Date.now() < until); // block the loop
  await new Promise((r) => setTimeout(r, 30));
  const text = await reg.metrics();
  const m = /^ticks_eventloop_lag_seconds\{thread="7"\} ([0-9.e-]+)$/m.exec(text);
  t.ok(m, 'gauge present');
  t.ok(Number(m![1]) > 0.005 && Number(m![1]) < 5, `p99 lag ${m![1]} s reflects the blocked loop`);
  // The same call registers this thread's heap gauges, with the same label.
  for (const name of ['ticks_thread_heap_used_bytes', 'ticks_thread_heap_total_bytes', 'ticks_thread_heap_limit_bytes', 'ticks_thread_external_memory_bytes']) {
    const h = new RegExp(`^${name}\\{thread="7"\\} (\\d+)$`, 'm').exec(text);
    t.ok(h && Number(h[1]) > 0, `${name}{thread="7"} is a positive byte count (${h?.[1]})`);
  }
  const used = Number(/^ticks_thread_heap_used_bytes\{thread="7"\} (\d+)$/m.exec(text)![1]);
  const total = Number(/^ticks_thread_heap_total_bytes\{thread="7"\} (\d+)$/m.exec(text)![1]);
  t.ok(used <= total, 'used heap is within the reserved heap');
});
