/**
 * bench/cluster delivery: persisted 1:1 throughput and latency through a 3-node cluster, with
 * bench/delivery's generator (open loop, latencies from the scheduled send time, so corrected for
 * coordinated omission; HDR histograms merged across generators).
 *
 * Two layouts of the same workload on the same 3-node cluster (same Redis, same store, every node
 * heartbeating and registering sessions):
 * - `cross`: generator g connects its senders to node g mod 3 and its receivers to node (g+1) mod 3.
 *   A conversation is owned by the sender's node (its first message registers it there), so every
 *   delivery leaves the owner as a `users` frame on the Redis bus to the receiver's node.
 * - `one`: every sender and receiver on node 0 (the baseline): the cluster's lookups (directory,
 *   session registry) are still made, but nothing crosses the bus.
 * Runs of the two layouts alternate (cross, one, cross, one, ...), each on a fresh cluster (new
 * Redis key prefix, new keyspace, new node processes), so both see the same conditions.
 */
import type { ChildProcess } from 'node:child_process';
import { mergeEncoded, type LatencySummary } from '../lib/hdr.js';
import { scrape, total, type Series } from '../lib/metrics.js';
import { busyFraction, cpuJiffies, pickSourceAddresses, processCpuUs } from '../lib/proc.js';
import { endChild, nextMessage, repoRoot, startChild } from '../lib/processes.js';
import { median } from '../lib/stats.js';
import { int, markdownTable, ms, pct } from '../lib/table.js';
import type { FromGenerator, RunResult, ToGenerator } from '../delivery/messages.js';
import { SECRET, startCluster, type ClusterOptions, type Services } from './cluster.js';
import { join } from 'node:path';

export type Layout = 'cross' | 'one';

export interface DeliveryParams {
  pairs: number;
  generators: number;
  runs: number;
  rates: number[];
  warmupS: number;
  durationS: number;
  graceS: number;
  genCpu: number | null;
  cluster: Omit<ClusterOptions, 'services' | 'tag'>;
}

export interface DeliveryFigures {
  layout: Layout;
  rate: number;
  deliveredPerS: number;
  ack: LatencySummary;
  deliver: LatencySummary;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  unanswered: number;
  refused: number;
  closes: number;
  connectFailures: number;
  /** Error frames by code, and unexpected closes by code, over all generators. */
  errors: Record<string, number>;
  closeCodes: Record<string, number>;
  /** CPU µs per delivered message over the window: the 3 nodes together, Cassandra, Redis. */
  nodesUsPerMsg: number;
  dbUsPerMsg: number | null;
  redisUsPerMsg: number;
  /** Node-to-node frames per delivered message (ticks_cluster_node_frames_total, all nodes). */
  busFramesPerMsg: number;
  /** The same by frame type (actor: to a conversation's owner, e.g. a dack; users: a delivery fan-out). */
  busByType: Record<string, number>;
  otherLoad: number;
}

const isT =
  <T extends FromGenerator>(t: T['t']) =>
  (m: unknown): m is T =>
    (m as { t?: string }).t === t;

type Fatal = { t: 'fatal'; error: string };
const orFatal =
  <T extends FromGenerator>(t: T['t']) =>
  (m: unknown): m is T | Fatal =>
    isT(t)(m) || isT('fatal')(m);

function unwrap<T>(r: T | Fatal): T {
  if ((r as { t: string }).t === 'fatal') throw new Error(`generator failed: ${(r as Fatal).error}`);
  return r as T;
}

async function oneRun(p: DeliveryParams, services: Services, generators: ChildProcess[], layout: Layout, rate: number, runNo: number, log: (line: string) => void): Promise<DeliveryFigures> {
  const tag = `${Date.now().toString(36)}${layout[0]}${runNo}`;
  const cluster = await startCluster({ ...p.cluster, services, tag });
  try {
    const n = cluster.nodes.length;
    const sources = pickSourceAddresses(p.generators, 2, 1000);
    const perGen: number[][] = Array.from({ length: p.generators }, () => []);
    for (let i = 0; i < p.pairs; i++) perGen[i % p.generators]!.push(i);
    const ready = await Promise.all(
      generators.map((g, i) => {
        const answer = nextMessage(g, orFatal<Extract<FromGenerator, { t: 'ready' }>>('ready'), 180_000);
        const sender = layout === 'cross' ? i % n : 0;
        const receiver = layout === 'cross' ? (i + 1) % n : 0;
        g.send({
          t: 'connect',
          url: cluster.nodes[sender]!.wsUrl,
          receiverUrl: cluster.nodes[receiver]!.wsUrl,
          localAddress: sources[i]!,
          secret: SECRET,
          pairs: perGen[i]!,
          concurrency: 32,
        } satisfies ToGenerator);
        return answer;
      }),
    );
    let connectFailures = 0;
    const readyPairs: number[] = [];
    for (const r0 of ready) {
      const r = unwrap(r0);
      connectFailures += r.failed;
      readyPairs.push(r.connected);
      if (r.failed > 0) log(`  connect failures: ${JSON.stringify(r.failures)}`);
    }
    const totalPairs = readyPairs.reduce((a, b) => a + b, 0);
    if (totalPairs === 0) throw new Error(`no pair connected:\n${cluster.nodes[0]!.proc.tail()}`);

    const startAt = Date.now() + 300;
    const measureFrom = startAt + p.warmupS * 1000;
    const measureTo = measureFrom + p.durationS * 1000;
    const pids = {
      nodes: cluster.nodes.map((x) => x.proc.pid),
      db: services.cassandra?.pid ?? null,
      redis: services.redis.pid,
      gens: generators.map((g) => g.pid!),
    };
    type Mark = { nodes: number; db: number | null; redis: number; gens: number; self: number; cpu0: ReturnType<typeof cpuJiffies>; cpu1: ReturnType<typeof cpuJiffies>; metrics: Promise<(Series | null)[]> };
    const marks: Mark[] = [];
    const sumCpu = (xs: number[]): number => xs.reduce((a, pid) => a + (processCpuUs(pid) ?? 0), 0);
    const mark = (): void => {
      const self = process.cpuUsage();
      marks.push({
        nodes: sumCpu(pids.nodes),
        db: pids.db === null ? null : processCpuUs(pids.db),
        redis: processCpuUs(pids.redis) ?? 0,
        gens: sumCpu(pids.gens),
        self: self.user + self.system,
        cpu0: cpuJiffies(0),
        cpu1: cpuJiffies(1),
        metrics: Promise.all(cluster.nodes.map((x) => scrape(x.metricsUrl).catch(() => null))),
      });
    };
    const timers = [setTimeout(mark, measureFrom - Date.now()), setTimeout(mark, measureTo - Date.now())];
    const results = await Promise.all(
      generators.map((g, i) => {
        const answer = nextMessage(g, orFatal<RunResult>('result'), (p.warmupS + p.durationS + p.graceS) * 1000 + 60_000);
        g.send({ t: 'run', rate: (rate * readyPairs[i]!) / totalPairs, startAtEpochMs: startAt, warmupS: p.warmupS, durationS: p.durationS, graceMs: p.graceS * 1000, tag } satisfies ToGenerator);
        return answer;
      }),
    );
    for (const t of timers) clearTimeout(t);
    const res = results.map(unwrap);
    await Promise.all(
      generators.map((g) => {
        const answer = nextMessage(g, orFatal<Extract<FromGenerator, { t: 'disconnected' }>>('disconnected'), 30_000);
        g.send({ t: 'disconnect' } satisfies ToGenerator);
        return answer.then(unwrap);
      }),
    );

    const sum = (f: (r: RunResult) => number): number => res.reduce((a, r) => a + f(r), 0);
    const delivered = sum((r) => r.deliveredInWindow);
    const [a, b] = marks.length === 2 ? marks : [undefined, undefined];
    const per = (x: number): number => x / Math.max(1, delivered);
    let busFrames = NaN;
    const busByType: Record<string, number> = {};
    if (a && b) {
      const [m0, m1] = await Promise.all([a.metrics, b.metrics]);
      busFrames = 0;
      for (let i = 0; i < n; i++) {
        const x = m0[i];
        const y = m1[i];
        if (!x || !y) busFrames = NaN;
        else {
          busFrames += total(y, 'ticks_cluster_node_frames_total') - total(x, 'ticks_cluster_node_frames_total');
          for (const type of ['actor', 'users', 'close', 'push']) {
            const d = total(y, 'ticks_cluster_node_frames_total', `type="${type}"`) - total(x, 'ticks_cluster_node_frames_total', `type="${type}"`);
            if (d > 0) busByType[type] = (busByType[type] ?? 0) + per(d);
          }
        }
      }
    }
    const ours = a && b ? b.nodes - a.nodes + (a.db !== null && b.db !== null ? b.db - a.db : 0) + (b.redis - a.redis) + (b.gens - a.gens) + (b.self - a.self) : NaN;
    const merge = (f: (r: RunResult) => Record<string, number>): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of res) for (const [k, v] of Object.entries(f(r))) out[k] = (out[k] ?? 0) + v;
      return out;
    };
    const closesOf = (r: RunResult): number => Object.values(r.closes).reduce((x, y) => x + y, 0);
    return {
      layout,
      rate,
      deliveredPerS: delivered / p.durationS,
      ack: mergeEncoded(res.map((r) => r.ackHist)),
      deliver: mergeEncoded(res.map((r) => r.deliverHist)),
      lost: sum((r) => r.lost),
      duplicates: sum((r) => r.duplicates),
      outOfOrder: sum((r) => r.outOfOrder),
      unanswered: sum((r) => r.unanswered),
      refused: sum((r) => Object.values(r.errors).reduce((x, y) => x + y, 0)),
      closes: sum(closesOf),
      connectFailures,
      errors: merge((r) => r.errors),
      closeCodes: merge((r) => r.closes),
      nodesUsPerMsg: a && b ? per(b.nodes - a.nodes) : NaN,
      dbUsPerMsg: a && b && a.db !== null && b.db !== null ? per(b.db - a.db) : null,
      redisUsPerMsg: a && b ? per(b.redis - a.redis) : NaN,
      busFramesPerMsg: per(busFrames),
      busByType,
      otherLoad: a && b ? busyFraction(a.cpu0, b.cpu0) + busyFraction(a.cpu1, b.cpu1) - ours / (p.durationS * 1e6) : NaN,
    };
  } catch (err) {
    for (const x of cluster.nodes) log(`node ${x.id} log tail:\n${x.proc.tail(15)}`);
    throw err;
  } finally {
    await cluster.stop(log);
  }
}

function runLine(f: DeliveryFigures, runNo: number): string {
  const bad = [
    f.lost ? `lost ${f.lost}` : '',
    f.duplicates ? `dups ${f.duplicates}` : '',
    f.unanswered ? `unanswered ${f.unanswered}` : '',
    f.refused ? `refused ${JSON.stringify(f.errors)}` : '',
    f.closes ? `closes ${JSON.stringify(f.closeCodes)}` : '',
    f.connectFailures ? `connect failures ${f.connectFailures}` : '',
  ].filter(Boolean).join(', ');
  return (
    `  ${f.layout} ${int(f.rate)}/s run ${runNo}: delivered ${int(f.deliveredPerS)}/s, sent p50/p99/p99.9 ${ms(f.ack.p50)}/${ms(f.ack.p99)}/${ms(f.ack.p999)} ms, ` +
    `delivered p50/p99/p99.9 ${ms(f.deliver.p50)}/${ms(f.deliver.p99)}/${ms(f.deliver.p999)} ms, nodes ${int(f.nodesUsPerMsg)} µs/msg` +
    `${f.dbUsPerMsg !== null ? `, cassandra ${int(f.dbUsPerMsg)} µs/msg` : ''}, redis ${int(f.redisUsPerMsg)} µs/msg, bus frames ${f.busFramesPerMsg.toFixed(2)}/msg ${JSON.stringify(Object.fromEntries(Object.entries(f.busByType).map(([k, v]) => [k, Number(v.toFixed(2))])))}, other load ${f.otherLoad.toFixed(2)} cores${bad ? ` [${bad}]` : ''}`
  );
}

export interface DeliveryStep {
  rate: number;
  layout: Layout;
  runs: DeliveryFigures[];
  m: Record<'deliveredPerS' | 'ackP50' | 'ackP99' | 'ackP999' | 'delP50' | 'delP99' | 'delP999' | 'nodesUsPerMsg' | 'redisUsPerMsg' | 'busFramesPerMsg' | 'otherLoad', number> & { dbUsPerMsg: number | null };
  bad: { lost: number; duplicates: number; outOfOrder: number; unanswered: number; refused: number; closes: number };
}

function summarize(rate: number, layout: Layout, runs: DeliveryFigures[]): DeliveryStep {
  const med = (f: (x: DeliveryFigures) => number): number => median(runs.map(f));
  const tot = (f: (x: DeliveryFigures) => number): number => runs.reduce((acc, x) => acc + f(x), 0);
  return {
    rate,
    layout,
    runs,
    m: {
      deliveredPerS: med((x) => x.deliveredPerS),
      ackP50: med((x) => x.ack.p50), ackP99: med((x) => x.ack.p99), ackP999: med((x) => x.ack.p999),
      delP50: med((x) => x.deliver.p50), delP99: med((x) => x.deliver.p99), delP999: med((x) => x.deliver.p999),
      nodesUsPerMsg: med((x) => x.nodesUsPerMsg),
      dbUsPerMsg: runs[0]!.dbUsPerMsg === null ? null : med((x) => x.dbUsPerMsg ?? NaN),
      redisUsPerMsg: med((x) => x.redisUsPerMsg),
      busFramesPerMsg: med((x) => x.busFramesPerMsg),
      otherLoad: med((x) => x.otherLoad),
    },
    bad: {
      lost: tot((x) => x.lost),
      duplicates: tot((x) => x.duplicates),
      outOfOrder: tot((x) => x.outOfOrder),
      unanswered: tot((x) => x.unanswered),
      refused: tot((x) => x.refused),
      closes: tot((x) => x.closes),
    },
  };
}

export async function benchDelivery(p: DeliveryParams, services: Services, log: (line: string) => void): Promise<{ steps: DeliveryStep[]; report: string }> {
  const genArgs = process.env.BENCH_GENERATOR_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const generators = Array.from({ length: p.generators }, () => startChild(join(repoRoot, 'bench/delivery/generator.ts'), p.genCpu, genArgs));
  const steps: DeliveryStep[] = [];
  const failures: string[] = [];
  try {
    for (const rate of p.rates) {
      const byLayout: Record<Layout, DeliveryFigures[]> = { cross: [], one: [] };
      for (let r = 1; r <= p.runs; r++) {
        for (const layout of ['cross', 'one'] as const) {
          // A run that fails (a node that does not start, a generator error) is said and tried once more.
          const f = await oneRun(p, services, generators, layout, rate, r, log).catch((err: unknown) => {
            log(`  ${layout} ${int(rate)}/s run ${r} FAILED, trying once more: ${(err as Error).message}`);
            failures.push(`${layout} ${rate}/s run ${r}: ${(err as Error).message.split('\n')[0]}`);
            return oneRun(p, services, generators, layout, rate, r, log);
          });
          log(runLine(f, r));
          byLayout[layout].push(f);
        }
      }
      steps.push(summarize(rate, 'cross', byLayout.cross), summarize(rate, 'one', byLayout.one));
    }
  } finally {
    await Promise.all(generators.map((g) => endChild(g)));
  }
  return { steps, report: report(steps) + (failures.length ? `\nFailed attempts (each tried once more): ${failures.join('; ')}` : '') };
}

function report(steps: DeliveryStep[]): string {
  const lines: string[] = [];
  lines.push(`## delivery (median of the runs; latencies in ms from the scheduled send time; cross = sender and receiver on different nodes, one = all on node 0 of the same cluster)`);
  lines.push(
    markdownTable(
      ['target msgs/s', 'layout', 'runs', 'delivered msgs/s', 'sent p50 / p99 / p99.9', 'delivered p50 / p99 / p99.9', 'lost', 'dups', 'unanswered+refused', 'closes', 'nodes µs/msg', 'cassandra µs/msg', 'redis µs/msg', 'bus frames/msg', 'other load'],
      steps.map((s) => [
        int(s.rate),
        s.layout,
        s.runs.length,
        int(s.m.deliveredPerS),
        `${ms(s.m.ackP50)} / ${ms(s.m.ackP99)} / ${ms(s.m.ackP999)}`,
        `${ms(s.m.delP50)} / ${ms(s.m.delP99)} / ${ms(s.m.delP999)}`,
        s.bad.lost,
        s.bad.duplicates,
        s.bad.unanswered + s.bad.refused,
        s.bad.closes,
        int(s.m.nodesUsPerMsg),
        s.m.dbUsPerMsg === null ? 'n/a' : int(s.m.dbUsPerMsg),
        int(s.m.redisUsPerMsg),
        s.m.busFramesPerMsg.toFixed(2),
        s.m.otherLoad.toFixed(2),
      ]),
    ),
  );
  lines.push('');
  lines.push('Ratios cross / one (medians):');
  for (const rate of [...new Set(steps.map((s) => s.rate))]) {
    const c = steps.find((s) => s.rate === rate && s.layout === 'cross');
    const o = steps.find((s) => s.rate === rate && s.layout === 'one');
    if (!c || !o) continue;
    const r = (x: number, y: number): string => (y > 0 ? `${(x / y).toFixed(2)}x` : 'n/a');
    lines.push(
      `- ${int(rate)}/s: delivered msgs/s ${r(c.m.deliveredPerS, o.m.deliveredPerS)}, sent p50/p99/p99.9 ${r(c.m.ackP50, o.m.ackP50)}/${r(c.m.ackP99, o.m.ackP99)}/${r(c.m.ackP999, o.m.ackP999)}, ` +
        `delivered p50/p99/p99.9 ${r(c.m.delP50, o.m.delP50)}/${r(c.m.delP99, o.m.delP99)}/${r(c.m.delP999, o.m.delP999)}, nodes CPU/msg ${r(c.m.nodesUsPerMsg, o.m.nodesUsPerMsg)} (${pct(c.m.nodesUsPerMsg / o.m.nodesUsPerMsg - 1)} more)`,
    );
  }
  return lines.join('\n');
}
