/**
 * bench/cluster: a 3-node ticks cluster (real node processes in cluster mode) on a private Redis and
 * a private Cassandra 5 that this benchmark starts (so killing a node never touches shared servers).
 *
 *   npm run bench:cluster -- delivery|storm|all [--engine scylla|embedded] [--runs 3] [--no-pin]
 *       [--shards 1] [--runtime tsx|build] [--node-env KEY=VALUE,...] [--node-args '--cpu-prof --cpu-prof-dir=DIR']
 *     delivery: [--rates 100,300] [--pairs 300] [--generators 3] [--warmup 3] [--duration 10] [--grace 10]
 *     storm:    [--clients 200] [--devices 2] [--pending 20] [--after 2] [--fill-rate 250] [--victim 2]
 *               [--lease-ms 10000] [--heartbeat-ms 3000] [--storm-timeout 120]
 *
 * delivery (bench/cluster/delivery.ts): cross-node 1:1 throughput and latency, users on different
 * nodes (messages cross the Redis bus), against the same workload with every user on one node of
 * the same cluster (the baseline; ratios cross/one).
 * storm (bench/cluster/storm.ts): kill -9 of a node holding K clients with M pending messages each;
 * time until all K are reconnected to the survivors and caught up, checked for loss and duplicates.
 *
 * Pinning (default): the 3 nodes, Cassandra and Redis on CPU 0; the generators (and this process)
 * on CPU 1, as bench/delivery pins one node and its Cassandra. The cluster therefore gets the same
 * single core as bench/delivery's single node: this measures what the cluster path costs, not
 * scale-out (2 cores cannot show that). The embedded engine (each node its own lmdb) is only for
 * the delivery benchmark: a cluster needs a shared store, so scylla is the real case.
 */
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildForBench, pinProcess, type NodeRuntime } from '../lib/processes.js';
import { machine } from '../lib/stats.js';
import { startServices, type Engine } from './cluster.js';
import { benchDelivery } from './delivery.js';
import { benchStorm } from './storm.js';

const args = process.argv.slice(2);
const flag = (name: string): boolean => args.includes(`--${name}`);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const which = args.find((a) => ['delivery', 'storm', 'all'].includes(a));
if (which === undefined) throw new Error('usage: npm run bench:cluster -- delivery|storm|all [options] (see bench/cluster/run.ts)');
const ENGINE = opt('engine', 'scylla') as Engine;
if (ENGINE !== 'scylla' && ENGINE !== 'embedded') throw new Error('--engine scylla or embedded');
if (ENGINE === 'embedded' && which !== 'delivery') throw new Error('the storm needs a shared store: --engine scylla (each embedded node has its own disk, so a killed node takes its data with it)');
const RUNS = Number(opt('runs', '3'));
const PIN = !flag('no-pin');
const SHARDS = Number(opt('shards', '1'));
const RUNTIME = opt('runtime', 'tsx') as NodeRuntime;
if (RUNTIME !== 'tsx' && RUNTIME !== 'build') throw new Error('--runtime tsx or build');
const NODE_ENV: Record<string, string> = Object.fromEntries(
  opt('node-env', '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1 || !kv.startsWith('TICKS_')) throw new Error(`--node-env takes TICKS_KEY=VALUE pairs, got ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
);
/** Extra flags for every node process, space-separated (profiling: `--cpu-prof --cpu-prof-dir=DIR`). */
const NODE_ARGS = opt('node-args', '').split(' ').filter(Boolean);
const SERVER_CPU = PIN ? 0 : null;
const GEN_CPU = PIN ? 1 : null;
const NODES = 3;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  if (cpus().length < 2 && PIN) throw new Error('pinning needs 2 CPUs (servers on 0, generators on 1); pass --no-pin');
  const started = new Date();
  console.log(`# bench/cluster ${which}  ${started.toISOString()}  ${machine()}`);
  console.log(`nodes=${NODES} engine=${ENGINE} shards=${SHARDS} runs=${RUNS} runtime=${RUNTIME} pin=${PIN ? 'nodes+cassandra+redis CPU0, generators CPU1' : 'off'}${Object.keys(NODE_ENV).length ? ` node-env=${JSON.stringify(NODE_ENV)}` : ''}${NODE_ARGS.length ? ` node-args=${NODE_ARGS.join(' ')}` : ''}`);
  if (PIN) await pinProcess(process.pid, 1);
  if (RUNTIME === 'build') await buildForBench(log);
  const services = await startServices(ENGINE, SERVER_CPU, log);
  const cluster = { engine: ENGINE, nodes: NODES, shards: SHARDS, cpu: SERVER_CPU, runtime: RUNTIME, env: NODE_ENV, ...(NODE_ARGS.length > 0 ? { nodeArgs: NODE_ARGS } : {}) };
  const out: string[] = [];
  const json: Record<string, unknown> = { bench: 'cluster', date: started.toISOString(), machine: machine(), engine: ENGINE, shards: SHARDS, runs: RUNS, pinned: PIN, runtime: RUNTIME };
  try {
    if (which === 'delivery' || which === 'all') {
      const p = {
        pairs: Number(opt('pairs', '300')),
        generators: Number(opt('generators', '3')),
        runs: RUNS,
        rates: opt('rates', '100,300').split(',').map(Number),
        warmupS: Number(opt('warmup', '3')),
        durationS: Number(opt('duration', '10')),
        graceS: Number(opt('grace', '10')),
        genCpu: GEN_CPU,
        cluster,
      };
      if (p.generators % NODES !== 0) throw new Error(`--generators must be a multiple of ${NODES} (each generator drives one (sender node, receiver node) combination)`);
      console.log(`delivery: pairs=${p.pairs} generators=${p.generators} rates=${p.rates.join(',')} warmup=${p.warmupS}s duration=${p.durationS}s grace=${p.graceS}s body=100B`);
      const d = await benchDelivery(p, services, log);
      out.push(d.report);
      json.delivery = d.steps.map((s) => ({ rate: s.rate, layout: s.layout, runs: s.runs.length, ...s.m, ...s.bad }));
    }
    if (which === 'storm' || which === 'all') {
      const p = {
        clients: Number(opt('clients', '200')),
        devices: Number(opt('devices', '2')),
        pending: Number(opt('pending', '20')),
        after: Number(opt('after', '2')),
        fillRate: Number(opt('fill-rate', '250')),
        victim: Number(opt('victim', '2')),
        leaseMs: Number(opt('lease-ms', '10000')),
        heartbeatMs: Number(opt('heartbeat-ms', '3000')),
        timeoutS: Number(opt('storm-timeout', '120')),
        runs: RUNS,
        cluster,
      };
      console.log(`storm: users=${p.clients} devices=${p.devices} pending=${p.pending} after=${p.after} fill-rate=${p.fillRate}/s victim=n${p.victim} leaseMs=${p.leaseMs} heartbeatMs=${p.heartbeatMs}`);
      const s = await benchStorm(p, services, log);
      out.push(s.report);
      json.storm = s.summary;
    }
  } finally {
    await services.stop();
  }
  console.log('');
  console.log(out.join('\n\n'));
  console.log('');
  console.log(JSON.stringify(json));
  await sleep(10);
}

await main();
