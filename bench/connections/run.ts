/**
 * bench/connections: idle authenticated connections, and what each one costs.
 *
 *   npm run bench:connections -- [--target 20000] [--per-node 18000] [--per-generator 18000]
 *       [--runs 1] [--concurrency 100] [--settle 5] [--runtime build|tsx] [--heap] [--no-pin]
 *       [--node-flag --max-semi-space-size=1]   (node/V8 flags for the node processes, repeatable)
 *
 * K = ceil(target / per-node) node processes (`src/main.ts`, gateway.shards=1, embedded store, each
 * its own data dir) share ONE port through SO_REUSEPORT; this machine caps a process at 20,000 open
 * files, so a node holds at most ~19k connections. G = ceil(target / per-generator) generator
 * processes (bench/connections/generator.ts), each from its own loopback source address
 * 127.0.0.N (about 28k ephemeral ports each), open connections with a distinct user and device per
 * connection (HS256 tokens minted in the generator) and wait for `hello`.
 *
 * Measured once everything is up and has settled (`--settle` s), against a baseline taken after
 * the nodes started and before any connection:
 * - user space per connection: the nodes' VmRSS delta (/proc/<pid>/status) / connections; the
 *   connections per node are counted from its socket file descriptors;
 * - kernel per socket: /proc/net/sockstat TCP `mem` pages delta x 4096 and the /proc/meminfo Slab
 *   delta, each / the TCP sockets delta (a loopback connection is two sockets: client and server);
 * - the generators' RSS per connection (the `ws` client side), for scale.
 * Then every generator closes its connections, the nodes are stopped (SIGTERM, drain) and the
 * benchmark checks that every process it started has exited.
 *
 * By default (--runtime build) the nodes run from a tsc build of src/, the same compilation and Lua
 * assets as `npm run build` (into .cache/bench-dist, so a dist/ of someone else's is left alone),
 * as production runs `node dist/main.js`. --runtime tsx runs `src/main.ts` through tsx as
 * `npm start` does; tsx's keepNames costs ~1.5 KB of heap per connection, so it is not what a
 * production node holds. --heap also runs bench/connections/heap.ts (heap per connection and a
 * census of the objects that make it up, which RSS cannot show), with the same runtime.
 *
 * Connections open in two halves with a reading in between, so the marginal RSS per connection
 * (second half only) is reported beside the average; the CPU both sides spent opening is reported
 * per connection.
 *
 * Nodes are pinned to CPU 0 and generators to CPU 1 unless --no-pin. Sysctls it may change (and
 * prints): net.ipv4.ip_local_port_range, when a generator needs more ports than the range has
 * (generators bind explicit source ports 10000-65535, so this only matters for larger shares).
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePorts } from '../../test/support/services/process.js';
import { mergeEncoded } from '../lib/hdr.js';
import { meminfoBytes, pickSourceAddresses, processCpu, readSysctl, rssBytes, setSysctl, sockstat, type SockStat } from '../lib/proc.js';
import { buildForBench, endChild, nextMessage, repoRoot, startChild, startTicksNode, type NodeRuntime, type TicksNode } from '../lib/processes.js';
import { machine, median } from '../lib/stats.js';
import { int, kb, markdownTable, ms } from '../lib/table.js';
import type { FromGenerator, ToGenerator } from './messages.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const TARGET = Number(opt('target', '20000'));
const PER_NODE = Number(opt('per-node', '18000'));
const PER_GEN = Number(opt('per-generator', '18000'));
const RUNS = Number(opt('runs', '1'));
const CONCURRENCY = Number(opt('concurrency', '100'));
const SETTLE_S = Number(opt('settle', '5'));
const PIN = !args.includes('--no-pin');
const FORCE = args.includes('--force');
const RUNTIME = opt('runtime', 'build') as NodeRuntime;
if (RUNTIME !== 'tsx' && RUNTIME !== 'build') throw new Error('--runtime tsx or build');
const HEAP = args.includes('--heap');
const NODE_FLAGS = args.flatMap((a, i) => (a === '--node-flag' && args[i + 1] !== undefined ? [args[i + 1]!] : []));
const SECRET = 'bench-connections-secret-'.padEnd(48, 'x');
/** Connections a node refuses beyond (HTTP 503) instead of running into the 20,000-file limit. */
const NODE_MAX_CONNECTIONS = 19_500;
/** Generous estimate of all memory one connection costs here (client, server, both kernel sockets). */
const EST_BYTES_PER_CONN = 30 * 1024;

const log = (line: string): void => void process.stderr.write(`${line}\n`);
/** Every process the benchmark started, checked at the end. */
const startedPids: number[] = [];

function socketFds(pid: number): number {
  let n = 0;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return NaN;
  }
  return n;
}

interface Reading {
  nodeRss: number[];
  nodeSockets: number[];
  genRss: number[];
  sock: SockStat;
  slab: number;
  available: number;
}

function read(nodes: TicksNode[], gens: ChildProcess[]): Reading {
  return {
    nodeRss: nodes.map((n) => rssBytes(n.pid) ?? NaN),
    nodeSockets: nodes.map((n) => socketFds(n.pid)),
    genRss: gens.map((g) => rssBytes(g.pid!) ?? NaN),
    sock: sockstat(),
    slab: meminfoBytes('Slab'),
    available: meminfoBytes('MemAvailable'),
  };
}

interface RunFigures {
  nodes: number;
  generators: number;
  opened: number;
  failed: number;
  failures: Record<string, number>;
  openMs: number;
  helloP50: number;
  helloP99: number;
  perNode: number[];
  userBytesPerConn: number;
  /** RSS growth per connection over the second half of the connections only. */
  marginalUserBytesPerConn: number;
  /** CPU spent opening (upgrade, token verification, hello, actor attach), per connection. */
  nodeCpuUsPerConn: number;
  nodeSysShare: number;
  genCpuUsPerConn: number;
  genSysShare: number;
  userBytesPerConnMin: number;
  userBytesPerConnMax: number;
  nodeBaselineRssMb: number;
  sockets: number;
  kernelMemBytesPerSocket: number;
  slabBytesPerSocket: number;
  clientBytesPerConn: number;
  availableDropPerConn: number;
  closeMs: number;
  closedWhileHeld: Record<string, number>;
  allExited: boolean;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));

async function oneRun(runNo: number, firstSource: number): Promise<RunFigures> {
  const K = Math.ceil(TARGET / PER_NODE);
  const G = Math.ceil(TARGET / PER_GEN);
  const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-conn-'));
  const [port] = await freePorts(1);
  const sources = pickSourceAddresses(G, firstSource, 100);
  log(`run ${runNo}: ${K} node process(es) on port ${port}, ${G} generator(s) from ${sources.join(', ')}`);
  const nodes: TicksNode[] = [];
  const gens: ChildProcess[] = [];
  try {
    for (let i = 0; i < K; i++) {
      nodes.push(
        await startTicksNode({
          dir,
          name: `node${i}`,
          cpu: PIN ? 0 : null,
          runtime: RUNTIME,
          nodeArgs: NODE_FLAGS,
          env: {
            TICKS_NODE_ID: `conn-${runNo}-${i}`,
            TICKS_LOG_LEVEL: 'warn',
            TICKS_DATA_DIR: join(dir, `data${i}`),
            TICKS_STORE_ENGINE: 'embedded',
            TICKS_STORE_EMBEDDED_PATH: join(dir, `data${i}`, 'store'),
            TICKS_GATEWAY_HOST: '127.0.0.1',
            TICKS_GATEWAY_PORT: String(port),
            TICKS_GATEWAY_SHARDS: '1',
            TICKS_GATEWAY_MAX_CONNECTIONS: String(NODE_MAX_CONNECTIONS),
            TICKS_AUTH_HS256_SECRET: SECRET,
            TICKS_AUTH_ALGORITHMS: 'HS256',
          },
        }),
      );
    }
    for (let i = 0; i < G; i++) gens.push(startChild(join(repoRoot, 'bench/connections/generator.ts'), PIN ? 1 : null));
    startedPids.push(...nodes.map((n) => n.pid), ...gens.map((g) => g.pid!));
    await sleep(3000); // let the nodes and generators finish starting (tsx compiles, JIT, first GCs)
    const before = read(nodes, gens);

    const perGen = Math.ceil(TARGET / G);
    const started = Date.now();
    const progress = new Map<ChildProcess, number>();
    for (const g of gens) {
      g.on('message', (m: FromGenerator) => {
        if (m.t === 'progress') progress.set(g, m.opened);
      });
    }
    const failures: Record<string, number> = {};
    let okCount = 0;
    let failed = 0;
    const hists: string[] = [];
    /** Opens the part [lo, hi) of every generator's share of users. */
    const openPart = async (lo: number, hi: number): Promise<void> => {
      const answers = gens.map((g, i) => {
        const share = Math.max(0, Math.min(perGen, TARGET - i * perGen));
        const from = i * perGen + Math.floor(share * lo);
        const count = i * perGen + Math.floor(share * hi) - from;
        const answer = nextMessage(g, (m): m is Extract<FromGenerator, { t: 'opened' | 'fatal' }> => ['opened', 'fatal'].includes((m as { t: string }).t), 15 * 60_000);
        g.send({
          t: 'open',
          url: `ws://127.0.0.1:${port}/ws?v=1`,
          localAddress: sources[i]!,
          secret: SECRET,
          prefix: `c${runNo}u`,
          from,
          count,
          concurrency: CONCURRENCY,
          helloTimeoutMs: 30_000,
          deadlineMs: 10 * 60_000,
        } satisfies ToGenerator);
        return answer;
      });
      for (const o of await Promise.all(answers)) {
        if (o.t === 'fatal') throw new Error(`generator failed: ${o.error}`);
        okCount += o.opened;
        failed += o.failed;
        hists.push(o.helloHist);
        for (const [k, v] of Object.entries(o.failures)) failures[k] = (failures[k] ?? 0) + v;
      }
    };
    const ticker = setInterval(() => log(`  ${int(sum([...progress.values()]))} connected after ${((Date.now() - started) / 1000).toFixed(0)} s`), 10_000);
    const cpu0 = { nodes: nodes.map((n) => processCpu(n.pid)), gens: gens.map((g) => processCpu(g.pid!)) };
    // Two halves with a reading in between: the second half's RSS growth per connection is the
    // marginal cost, free of one-off growth (JIT code, heap headroom) that the first connections pay.
    let mid: Reading;
    let midCount = 0;
    try {
      await openPart(0, 0.5);
      await sleep(SETTLE_S * 1000);
      mid = read(nodes, gens);
      midCount = okCount;
      await openPart(0.5, 1);
    } finally {
      clearInterval(ticker);
    }
    const cpu1 = { nodes: nodes.map((n) => processCpu(n.pid)), gens: gens.map((g) => processCpu(g.pid!)) };
    const cpuOf = (a: (ReturnType<typeof processCpu>)[], b: (ReturnType<typeof processCpu>)[]): { user: number; sys: number } => ({
      user: sum(b.map((x, i) => (x?.userUs ?? 0) - (a[i]?.userUs ?? 0))),
      sys: sum(b.map((x, i) => (x?.systemUs ?? 0) - (a[i]?.systemUs ?? 0))),
    });
    const nodeCpu = cpuOf(cpu0.nodes, cpu1.nodes);
    const genCpu = cpuOf(cpu0.gens, cpu1.gens);
    const openMs = Date.now() - started - SETTLE_S * 1000;
    log(`  ${int(okCount)} connections hello'd in ${(openMs / 1000).toFixed(1)} s (${failed} failed${failed ? `: ${JSON.stringify(failures)}` : ''}); settling ${SETTLE_S} s`);
    await sleep(SETTLE_S * 1000);
    const after = read(nodes, gens);
    const hello = mergeEncoded(hists);

    const perNode = nodes.map((_, i) => after.nodeSockets[i]! - before.nodeSockets[i]!);
    const perNodeBytes = nodes.map((_, i) => (after.nodeRss[i]! - before.nodeRss[i]!) / Math.max(1, perNode[i]!));
    const sockets = after.sock.tcpInuse - before.sock.tcpInuse;
    const figures: Omit<RunFigures, 'closeMs' | 'closedWhileHeld' | 'allExited'> = {
      nodes: K,
      generators: G,
      opened: okCount,
      failed,
      failures,
      openMs,
      helloP50: hello.p50,
      helloP99: hello.p99,
      perNode,
      userBytesPerConn: (sum(after.nodeRss) - sum(before.nodeRss)) / Math.max(1, okCount),
      marginalUserBytesPerConn: (sum(after.nodeRss) - sum(mid.nodeRss)) / Math.max(1, okCount - midCount),
      nodeCpuUsPerConn: (nodeCpu.user + nodeCpu.sys) / Math.max(1, okCount),
      nodeSysShare: nodeCpu.sys / Math.max(1, nodeCpu.user + nodeCpu.sys),
      genCpuUsPerConn: (genCpu.user + genCpu.sys) / Math.max(1, okCount),
      genSysShare: genCpu.sys / Math.max(1, genCpu.user + genCpu.sys),
      userBytesPerConnMin: Math.min(...perNodeBytes),
      userBytesPerConnMax: Math.max(...perNodeBytes),
      nodeBaselineRssMb: sum(before.nodeRss) / K / 2 ** 20,
      sockets,
      kernelMemBytesPerSocket: ((after.sock.tcpMemPages - before.sock.tcpMemPages) * 4096) / Math.max(1, sockets),
      slabBytesPerSocket: (after.slab - before.slab) / Math.max(1, sockets),
      clientBytesPerConn: (sum(after.genRss) - sum(before.genRss)) / Math.max(1, okCount),
      availableDropPerConn: (before.available - after.available) / Math.max(1, okCount),
    };

    const closeStarted = Date.now();
    const closed = await Promise.all(
      gens.map((g) => {
        const a = nextMessage(g, (m): m is Extract<FromGenerator, { t: 'closed' | 'fatal' }> => ['closed', 'fatal'].includes((m as { t: string }).t), 5 * 60_000);
        g.send({ t: 'close' } satisfies ToGenerator);
        return a;
      }),
    );
    const closedWhileHeld: Record<string, number> = {};
    for (const c of closed) {
      if (c.t === 'fatal') throw new Error(`generator failed: ${c.error}`);
      for (const [k, v] of Object.entries(c.closedByServerWhileHeld)) closedWhileHeld[k] = (closedWhileHeld[k] ?? 0) + v;
    }
    const closeMs = Date.now() - closeStarted;
    return { ...figures, closeMs, closedWhileHeld, allExited: false };
  } finally {
    await Promise.all(gens.map((g) => endChild(g)));
    const stops = await Promise.all(nodes.map((n) => n.stop(30_000)));
    stops.forEach((s, i) => {
      if (s.killed || s.code !== 0) log(`  node${i} stop: ${JSON.stringify(s)}\n${nodes[i]!.tail(10)}`);
    });
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const date = new Date();
  console.log(`# bench/connections  ${date.toISOString()}  ${machine()}`);
  const K = Math.ceil(TARGET / PER_NODE);
  const G = Math.ceil(TARGET / PER_GEN);
  console.log(`target=${int(TARGET)} nodes=${K} (shards=1 each, one port, runtime ${RUNTIME}${NODE_FLAGS.length ? ` ${NODE_FLAGS.join(' ')}` : ''}) generators=${G} runs=${RUNS} concurrency=${CONCURRENCY}/generator settle=${SETTLE_S}s pin=${PIN ? 'nodes CPU0, generators CPU1' : 'off'}`);
  if (RUNTIME === 'build') await buildForBench(log);

  const need = TARGET * EST_BYTES_PER_CONN;
  const available = meminfoBytes('MemAvailable');
  if (available < 2 * need && !FORCE) {
    throw new Error(`MemAvailable ${int(available / 2 ** 20)} MiB is under twice the ~${int(need / 2 ** 20)} MiB this target may need; lower --target or pass --force`);
  }
  const range = readSysctl('net.ipv4.ip_local_port_range').split(' ').map(Number);
  const ports = range[1]! - range[0]! + 1;
  // The generators bind explicit source ports 10000-65535 (bench/lib/wire.ts says why), so the
  // ephemeral range matters only if that ever changes; it is checked and printed all the same.
  log(`sysctl net.ipv4.ip_local_port_range = ${range.join(' ')} (${int(ports)} ports per source address; generators bind explicit ports 10000-65535)`);
  if (ports < Math.ceil(TARGET / G) * 1.2) {
    setSysctl('net.ipv4.ip_local_port_range', '1024 65535', log);
  }
  log(`sysctl net.core.somaxconn = ${readSysctl('net.core.somaxconn')}, net.ipv4.tcp_max_syn_backlog = ${readSysctl('net.ipv4.tcp_max_syn_backlog')}, net.ipv4.tcp_mem = ${readSysctl('net.ipv4.tcp_mem')}`);

  const runs: RunFigures[] = [];
  for (let r = 1; r <= RUNS; r++) {
    // Each run takes fresh source addresses past the previous run's (TIME_WAIT).
    const f = await oneRun(r, 2 + (r - 1) * G);
    runs.push(f);
    log(
      `run ${r}: ${int(f.opened)} hello'd, ${kb(f.userBytesPerConn)} KB user space/conn (nodes ${kb(f.userBytesPerConnMin)}-${kb(f.userBytesPerConnMax)}; marginal ${kb(f.marginalUserBytesPerConn)}), ` +
        `kernel ${kb(f.kernelMemBytesPerSocket)} KB buffers + ${kb(f.slabBytesPerSocket)} KB slab per socket, close ${(f.closeMs / 1000).toFixed(1)} s`,
    );
  }
  // Every process a run started was ended in its finally block; check that none is left.
  await sleep(500);
  const leftovers = startedPids.filter((pid) => {
    try {
      return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  });
  const allExited = leftovers.length === 0;
  for (const r of runs) r.allExited = allExited;

  const med = (f: (x: RunFigures) => number): number => median(runs.map(f));
  const last = runs[runs.length - 1]!;
  console.log('');
  console.log(`## idle connections (${RUNS === 1 ? 'one run' : `median of ${RUNS} runs`})`);
  console.log(
    markdownTable(
      ['figure', 'value'],
      [
        ['target connections', int(TARGET)],
        ['node processes x shards / generators', `${K} x 1 / ${G}`],
        ['connections hello\'d (failed)', `${int(med((x) => x.opened))} (${int(med((x) => x.failed))})`],
        ['connections per node (last run)', last.perNode.map(int).join(', ')],
        ['time to open all (s)', (med((x) => x.openMs) / 1000).toFixed(1)],
        ['upgrade to hello p50 / p99 (ms)', `${ms(med((x) => x.helloP50))} / ${ms(med((x) => x.helloP99))}`],
        ['node RSS at baseline (MB per node)', med((x) => x.nodeBaselineRssMb).toFixed(0)],
        ['**user space per connection (KB, node RSS delta)**', `**${kb(med((x) => x.userBytesPerConn))}** (per node ${kb(med((x) => x.userBytesPerConnMin))} to ${kb(med((x) => x.userBytesPerConnMax))})`],
        ['... marginal, second half of the connections only (KB)', kb(med((x) => x.marginalUserBytesPerConn))],
        ['node CPU to open one connection (µs; kernel share)', `${int(med((x) => x.nodeCpuUsPerConn))} (${(med((x) => x.nodeSysShare) * 100).toFixed(0)}%)`],
        ['generator CPU to open one connection (µs; kernel share)', `${int(med((x) => x.genCpuUsPerConn))} (${(med((x) => x.genSysShare) * 100).toFixed(0)}%)`],
        ['TCP sockets added (both ends)', int(med((x) => x.sockets))],
        ['kernel TCP buffer memory per socket (KB, sockstat mem)', kb(med((x) => x.kernelMemBytesPerSocket))],
        ['kernel slab per socket (KB, meminfo Slab)', kb(med((x) => x.slabBytesPerSocket))],
        ['client (ws generator) RSS per connection (KB)', kb(med((x) => x.clientBytesPerConn))],
        ['MemAvailable drop per connection (KB; box-wide, other work moves it)', kb(med((x) => x.availableDropPerConn))],
        ['closing all (s)', (med((x) => x.closeMs) / 1000).toFixed(1)],
        ['closed by the server while held', JSON.stringify(last.closedWhileHeld)],
        ['every process exited', allExited ? `yes (${startedPids.length})` : `no: ${leftovers.join(', ')}`],
      ],
    ),
  );
  console.log('');
  console.log(`goal: <= 1.5 KB user space per connection: ${med((x) => x.userBytesPerConn) <= 1536 ? 'met' : 'NOT met'}`);
  console.log(
    JSON.stringify({
      bench: 'connections',
      date: date.toISOString(),
      machine: machine(),
      params: { target: TARGET, nodes: K, generators: G, runs: RUNS, concurrency: CONCURRENCY, settleS: SETTLE_S, pinned: PIN, runtime: RUNTIME, nodeFlags: NODE_FLAGS },
      opened: med((x) => x.opened),
      failed: med((x) => x.failed),
      openS: med((x) => x.openMs) / 1000,
      helloP50Us: med((x) => x.helloP50),
      helloP99Us: med((x) => x.helloP99),
      userBytesPerConn: Math.round(med((x) => x.userBytesPerConn)),
      marginalUserBytesPerConn: Math.round(med((x) => x.marginalUserBytesPerConn)),
      nodeCpuUsPerConn: Math.round(med((x) => x.nodeCpuUsPerConn)),
      genCpuUsPerConn: Math.round(med((x) => x.genCpuUsPerConn)),
      kernelMemBytesPerSocket: Math.round(med((x) => x.kernelMemBytesPerSocket)),
      slabBytesPerSocket: Math.round(med((x) => x.slabBytesPerSocket)),
      clientBytesPerConn: Math.round(med((x) => x.clientBytesPerConn)),
      availableDropBytesPerConn: Math.round(med((x) => x.availableDropPerConn)),
      closeS: med((x) => x.closeMs) / 1000,
      allExited,
      runs: runs.map((x) => ({ opened: x.opened, failed: x.failed, perNode: x.perNode, userBytesPerConn: Math.round(x.userBytesPerConn), slabBytesPerSocket: Math.round(x.slabBytesPerSocket) })),
    }),
  );
  if (HEAP) {
    console.log('');
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', join(repoRoot, 'bench/connections/heap.ts'), '--connections', '5000', '--runtime', RUNTIME, ...(PIN ? [] : ['--no-pin'])],
      { cwd: repoRoot, stdio: 'inherit' },
    );
    if (r.status !== 0) log(`heap.ts failed (exit ${r.status})`);
  }
}

await main();
