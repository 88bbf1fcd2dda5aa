/**
 * What one idle connection costs on the JS heap, and which objects make it up.
 *
 *   node --expose-gc --import tsx bench/connections/heap.ts [--connections 5000] [--settle 12] [--runtime build|tsx] [--no-pin]
 *   (or `npm run bench:connections -- --heap`, which runs this after the main measurement)
 *
 * A node's /metrics reports the heap of its main thread only, and a shard's connections live on
 * the shard thread's heap, which nothing outside the thread can read. So this runs one shard
 * (src/shard.ts `runShard`, the same code a shard worker runs) on this process's main thread,
 * opens N authenticated connections from a generator child (bench/connections/generator.ts), and
 * compares after full GCs: heap used and external memory per connection, plus a heap snapshot
 * census diff by constructor (count and bytes per connection). (RSS is not compared here: writing
 * a snapshot inflates it. bench/connections/run.ts measures RSS on real node processes.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { configSchema } from '../../src/config/schema.js';
import type { MainToShard, ShardToMain } from '../../src/shard-control.js';
import { freePorts } from '../../test/support/services/process.js';
import { censusDiff, heapCensus } from '../lib/heapsnapshot.js';
import { pickSourceAddresses } from '../lib/proc.js';
import { BUILD_DIR, buildForBench, endChild, nextMessage, pinProcess, repoRoot, startChild } from '../lib/processes.js';
import { kb } from '../lib/table.js';
import type { FromGenerator, ToGenerator } from './messages.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const N = Number(opt('connections', '5000'));
/** Seconds between the last hello and the census: per-session timers and registrations settle. */
const SETTLE_S = Number(opt('settle', '12'));
const PIN = !args.includes('--no-pin');
const RUNTIME = opt('runtime', 'build');
if (RUNTIME !== 'tsx' && RUNTIME !== 'build') throw new Error('--runtime tsx or build');
const SECRET = 'bench-heap-secret-'.padEnd(48, 'x');

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
const fullGc = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
};

async function main(): Promise<void> {
  if (PIN) await pinProcess(process.pid, 0);
  // The shard code itself comes from src/ through tsx (this process's loader) or from the tsc build.
  if (RUNTIME === 'build') await buildForBench((l) => console.log(l));
  const shardModule = RUNTIME === 'build' ? pathToFileURL(join(BUILD_DIR, 'shard.js')).href : '../../src/shard.js';
  const { runShard } = (await import(shardModule)) as typeof import('../../src/shard.js');
  const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-heap-'));
  const [port] = await freePorts(1);
  const config = configSchema.parse({
    nodeId: 'heap',
    log: { level: 'warn' },
    dataDir: dir,
    store: { embedded: { path: join(dir, 'store') } },
    gateway: { host: '127.0.0.1', port, shards: 1 },
    auth: { hs256Secret: SECRET, algorithms: ['HS256'] },
  });
  let onMain: (m: MainToShard) => void = () => {};
  const posted: ShardToMain[] = [];
  const waiters = new Set<() => void>();
  const waitFor = async (t: ShardToMain['t']): Promise<void> => {
    for (let i = 0; i < 600 && !posted.some((m) => m.t === t); i++) await new Promise<void>((r) => (waiters.add(r), setTimeout(r, 100)));
    if (!posted.some((m) => m.t === t)) throw new Error(`the shard never posted ${t}`);
  };
  await runShard(
    { index: 0, shardCount: 1, generation: 0, nodeId: 'heap', incarnation: 'heap', config, port: port!, hs256Secret: SECRET, publicKeys: false, peers: [null], testHooks: false },
    {
      post: (m) => {
        posted.push(m);
        for (const w of waiters) w();
      },
      onMessage: (fn) => (onMain = fn),
    },
  );
  await waitFor('ready');

  const gen = startChild(join(repoRoot, 'bench/connections/generator.ts'), PIN ? 1 : null);
  const [source] = pickSourceAddresses(1, 40, 100);
  await new Promise((r) => setTimeout(r, 2000));
  await fullGc();
  const before = { heap: getHeapStatistics(), mem: process.memoryUsage() };
  const snapBefore = writeHeapSnapshot(join(dir, 'before.heapsnapshot'));

  const opened = nextMessage(gen, (m): m is Extract<FromGenerator, { t: 'opened' | 'fatal' }> => ['opened', 'fatal'].includes((m as { t: string }).t), 10 * 60_000);
  gen.send({ t: 'open', url: `ws://127.0.0.1:${port}/ws?v=1`, localAddress: source!, secret: SECRET, prefix: 'h', from: 0, count: N, concurrency: 100, helloTimeoutMs: 30_000, deadlineMs: 5 * 60_000 } satisfies ToGenerator);
  const o = await opened;
  if (o.t === 'fatal') throw new Error(o.error);
  const conns = o.opened;
  await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
  await fullGc();
  const after = { heap: getHeapStatistics(), mem: process.memoryUsage() };
  const snapAfter = writeHeapSnapshot(join(dir, 'after.heapsnapshot'));

  const closed = nextMessage(gen, (m): m is Extract<FromGenerator, { t: 'closed' | 'fatal' }> => ['closed', 'fatal'].includes((m as { t: string }).t), 5 * 60_000);
  gen.send({ t: 'close' } satisfies ToGenerator);
  const c = await closed;
  // A census of connections the server closed meanwhile would undercount: say so.
  const early = c.t === 'closed' ? c.closedByServerWhileHeld : {};
  await endChild(gen);
  onMain({ t: 'drain', timeoutMs: 2000 });
  await waitFor('drained');

  const per = (a: number, b: number): string => kb((b - a) / conns);
  const fullDiff = censusDiff(heapCensus(snapBefore), heapCensus(snapAfter));
  // Objects that every connection adds: census rows that grew by at least one object per two
  // connections, plus the hash tables of the per-shard Maps and Sets keyed by connection or user
  // (one table each, grown with the connections). Summing every row instead would also count
  // unrelated growth and shrinkage in the same interval (module caches freed after start-up), which
  // swings by +-2 KB per connection from run to run; so does used_heap_size. `(code)` rows are left
  // out: they are JIT output of the run (a few hundred code objects, whatever the connection count;
  // checked by diffing object ids and retainers), not per-connection state.
  const perConnection = (d: { key: string; count: number; bytes: number }): boolean =>
    d.bytes > 0 && !d.key.startsWith('(code)') && (d.count / conns >= 0.5 || / \(array\) of (Map|Set) \(object\)$/.test(d.key));
  const liveBytes = fullDiff.filter(perConnection).reduce((a, d) => a + d.bytes, 0);
  console.log(`## heap per idle connection (one shard in-process, ${RUNTIME === 'build' ? 'tsc build' : 'tsx'}, ${conns} connections, after full GCs)`);
  console.log(`heap of the objects every connection adds, snapshot census (KB): ${kb(liveBytes / conns)}`);
  console.log(`used_heap_size delta per connection (KB; noisy): ${per(before.heap.used_heap_size, after.heap.used_heap_size)}`);
  console.log(`external (ArrayBuffers, native) per connection (KB): ${per(before.mem.external, after.mem.external)}`);
  console.log(`connections the server closed before the census was read: ${JSON.stringify(early)}`);
  const diff = fullDiff.slice(0, 30);
  console.log('heap snapshot census diff, per connection (objects, bytes):');
  for (const d of diff) console.log(`  ${(d.count / conns).toFixed(2).padStart(6)} x  ${(d.bytes / conns).toFixed(0).padStart(5)} B  ${d.key}`);
  console.log(
    JSON.stringify({
      bench: 'connections-heap',
      runtime: RUNTIME,
      connections: conns,
      liveHeapBytesPerConn: Math.round(liveBytes / conns),
      heapUsedBytesPerConn: Math.round((after.heap.used_heap_size - before.heap.used_heap_size) / conns),
      externalBytesPerConn: Math.round((after.mem.external - before.mem.external) / conns),
      census: diff.map((d) => ({ key: d.key, countPerConn: +(d.count / conns).toFixed(3), bytesPerConn: Math.round(d.bytes / conns) })),
    }),
  );
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

await main();
