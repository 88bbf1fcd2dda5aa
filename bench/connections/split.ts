/**
 * Where the RSS of idle connections goes, on ONE real node process (the tsc build, gateway.shards=1):
 *
 *   node --import tsx bench/connections/split.ts [--connections 16000] [--settle 10] [--no-pin]
 *       [--node-flag --max-semi-space-size=2]   (V8/node flags for the node process, repeatable)
 *       [--no-build]   (reuse the last tsc build of .cache/bench-dist)
 *
 * Opens N authenticated idle connections from one generator (bench/connections/generator.ts) and
 * compares, before and after (each after `--settle` s): the process RSS (/proc), and from the node's
 * own /metrics (one process on the port, so every scrape reaches it) each thread's V8 heap, used and
 * committed (`ticks_thread_heap_used_bytes` / `_heap_total_bytes{thread}`). What RSS grew by beyond
 * the committed heaps is memory outside V8: uWS's native per-socket state, malloc arenas and code.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../../test/support/services/process.js';
import { pickSourceAddresses, rssBytes } from '../lib/proc.js';
import { buildForBench, endChild, nextMessage, repoRoot, startChild, startTicksNode } from '../lib/processes.js';
import { int, kb } from '../lib/table.js';
import type { FromGenerator, ToGenerator } from './messages.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const N = Number(opt('connections', '16000'));
const SETTLE_S = Number(opt('settle', '10'));
const PIN = !args.includes('--no-pin');
const SECRET = 'bench-split-secret-'.padEnd(48, 'x');
const NODE_FLAGS = args.flatMap((a, i) => (a === '--node-flag' && args[i + 1] !== undefined ? [args[i + 1]!] : []));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Reading {
  rss: number;
  heapUsed: Record<string, number>;
  heapTotal: Record<string, number>;
}

async function read(port: number, pid: number): Promise<Reading> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const per = (name: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const m of text.matchAll(new RegExp(`^${name}\\{thread="([^"]+)"\\} (\\d+)$`, 'gm'))) out[m[1]!] = Number(m[2]);
    return out;
  };
  return { rss: rssBytes(pid) ?? NaN, heapUsed: per('ticks_thread_heap_used_bytes'), heapTotal: per('ticks_thread_heap_total_bytes') };
}

async function main(): Promise<void> {
  if (!args.includes('--no-build')) await buildForBench((l) => console.error(l));
  const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-split-'));
  const [port] = await freePorts(1);
  const node = await startTicksNode({
    dir,
    name: 'split',
    cpu: PIN ? 0 : null,
    runtime: 'build',
    nodeArgs: NODE_FLAGS,
    env: {
      TICKS_LOG_LEVEL: 'warn',
      TICKS_DATA_DIR: join(dir, 'data'),
      TICKS_STORE_ENGINE: 'embedded',
      TICKS_STORE_EMBEDDED_PATH: join(dir, 'data', 'store'),
      TICKS_GATEWAY_HOST: '127.0.0.1',
      TICKS_GATEWAY_PORT: String(port),
      TICKS_GATEWAY_SHARDS: '1',
      TICKS_GATEWAY_MAX_CONNECTIONS: '19500',
      TICKS_AUTH_HS256_SECRET: SECRET,
      TICKS_AUTH_ALGORITHMS: 'HS256',
    },
  });
  const gen = startChild(join(repoRoot, 'bench/connections/generator.ts'), PIN ? 1 : null);
  try {
    const [source] = pickSourceAddresses(1, 60, 100);
    await sleep(SETTLE_S * 1000);
    const before = await read(port!, node.pid);
    const opened = nextMessage(gen, (m): m is Extract<FromGenerator, { t: 'opened' | 'fatal' }> => ['opened', 'fatal'].includes((m as { t: string }).t), 10 * 60_000);
    gen.send({ t: 'open', url: `ws://127.0.0.1:${port}/ws?v=1`, localAddress: source!, secret: SECRET, prefix: 's', from: 0, count: N, concurrency: 100, helloTimeoutMs: 30_000, deadlineMs: 5 * 60_000 } satisfies ToGenerator);
    const o = await opened;
    if (o.t === 'fatal') throw new Error(o.error);
    await sleep(SETTLE_S * 1000);
    const after = await read(port!, node.pid);
    const n = o.opened;
    const per = (a: number, b: number): string => kb((b - a) / n);
    const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
    console.log(`## where idle connections' memory goes (one node process, tsc build${NODE_FLAGS.length ? ` with ${NODE_FLAGS.join(' ')}` : ''}, ${int(n)} connections, settle ${SETTLE_S} s)`);
    console.log(`RSS per connection (KB): ${per(before.rss, after.rss)}`);
    for (const th of Object.keys(after.heapUsed)) {
      console.log(`thread ${th}: heap used ${per(before.heapUsed[th] ?? 0, after.heapUsed[th]!)} KB, heap committed ${per(before.heapTotal[th] ?? 0, after.heapTotal[th] ?? 0)} KB per connection`);
    }
    const outside = after.rss - before.rss - (sum(after.heapTotal) - sum(before.heapTotal));
    console.log(`outside the V8 heaps (uWS native sockets, malloc, code) per connection (KB): ${kb(outside / n)}`);
    console.log(JSON.stringify({ bench: 'connections-split', connections: n, settleS: SETTLE_S, nodeFlags: NODE_FLAGS, before, after }));
  } finally {
    await endChild(gen);
    await node.stop(30_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
