/**
 * bench/store: appends/s and read latency percentiles on both store engines.
 *
 *   npm run bench:store -- [embedded|scylla|all|group-commit|scylla-cost] [--runs 3]
 *       [--paxos v1|v2] [--full-jit]   (for a Cassandra started here)
 *
 * Workloads (each run `runs` times; the median is printed):
 * - hot: one conversation, one writer, sequential group commits of 1, 10 and 100 messages;
 * - many: 10,000 conversations with one message each, 64 in flight (scylla: 2,000, see below);
 * - reads: random 50-message pages forward and backward from a 5,000-message conversation;
 * - group-commit (embedded only, also run by `embedded`): the `many` workload at 64 and 512 in
 *   flight with store.embedded.groupCommit = writer (per-conversation groups) and = engine
 *   (engine-wide groups), runs alternating between the two, with appends/s and CPU per append;
 * - scylla-cost: Cassandra and client CPU per request kind of the append path (scylla-cost.ts);
 * - fencing (scylla): the store's fenced append path against the same rows written as a plain
 *   UNLOGGED BATCH (what an unfenced store would do), so the cost of fencing is known.
 *
 * The scylla engine runs against Apache Cassandra 5: TICKS_BENCH_CASSANDRA_CONTACT_POINTS, or one
 * started here with the test harness's fast single-node settings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cassandra from 'cassandra-driver';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { ScyllaStore } from '../../src/store/scylla/scylla-store.js';
import { statements } from '../../src/store/scylla/cql.js';
import type { Store } from '../../src/store/store.js';
import { startCassandra } from '../../test/support/services/cassandra.js';
import { latency, machine, median, nowUs } from '../lib/stats.js';
import { scyllaCost } from './scylla-cost.js';
import { drafts, hotConversation, manyConversations, reads } from './workloads.js';

const args = process.argv.slice(2);
const which = args.find((a) => !a.startsWith('--')) ?? 'all';
const runsIdx = args.indexOf('--runs');
const RUNS = runsIdx >= 0 ? Number(args[runsIdx + 1]) : 3;
const BUCKET = 1000;

type Row = [string, string];
const rows: Row[] = [];
const out = (name: string, value: string) => {
  rows.push([name, value]);
  console.log(`${name.padEnd(58)} ${value}`);
};
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function medianOf<T>(label: string, runs: number, fn: () => Promise<T>, pick: (t: T) => Record<string, number>) {
  const samples: Record<string, number[]> = {};
  for (let r = 0; r < runs; r++) {
    const res = pick(await fn());
    for (const [k, v] of Object.entries(res)) (samples[k] ??= []).push(v);
  }
  const m: Record<string, number> = {};
  for (const [k, v] of Object.entries(samples)) m[k] = median(v);
  process.stderr.write(`  (${label}: ${runs} runs)\n`);
  return m;
}

async function benchEngine(name: string, store: Store, manyCount: number) {
  console.log(`\n## ${name}`);
  for (const batch of [1, 10, 100]) {
    const batches = name === 'embedded' ? (batch === 1 ? 2000 : 500) : batch === 1 ? 400 : 150;
    const m = await medianOf(`hot ${batch}`, RUNS, () => hotConversation(store, batch, batches), (f) => ({
      rate: f.msgsPerSec, p50: f.batchP50us, p99: f.batchP99us,
    }));
    out(`${name} hot conversation, batch ${batch}: msgs/s`, fmt(m.rate!));
    out(`${name} hot conversation, batch ${batch}: commit p50 / p99 (µs)`, `${fmt(m.p50!)} / ${fmt(m.p99!)}`);
  }
  const many = await medianOf('many', RUNS, () => manyConversations(store, manyCount, 64), (f) => ({
    rate: f.appendsPerSec, open: f.openWriterP50us, p50: f.appendP50us, p99: f.appendP99us,
  }));
  out(`${name} ${fmt(manyCount)} conversations x 1 message: appends/s`, fmt(many.rate!));
  out(`${name} ... append p50 / p99 (µs); openWriter p50`, `${fmt(many.p50!)} / ${fmt(many.p99!)}; ${fmt(many.open!)}`);
  for (const dir of ['forward', 'backward'] as const) {
    const r = await medianOf(`reads ${dir}`, RUNS, () => reads(store, 5000, 3000, 8, dir), (f) => ({
      rate: f.readsPerSec, p50: f.p50us, p99: f.p99us, p999: f.p999us,
    }));
    out(`${name} read ${dir} 50 msgs: reads/s`, fmt(r.rate!));
    out(`${name} read ${dir} 50 msgs: p50 / p99 / p99.9 (µs)`, `${fmt(r.p50!)} / ${fmt(r.p99!)} / ${fmt(r.p999!)}`);
  }
}

/** The same 100-row batches through the store (fenced) and as a plain unlogged batch (unfenced). */
async function fencingCost(store: Store, contactPoints: string[], dc: string, keyspace: string) {
  const client = new cassandra.Client({ contactPoints, localDataCenter: dc, keyspace });
  await client.connect();
  const insert = statements(keyspace).insertMessage.replace(/\s+IF NOT EXISTS$/, '');
  for (const size of [1, 10, 100]) {
    const fenced: number[] = [];
    const plain: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const id = `fence-${Date.now()}-${r}-${size}`;
      await store.createConversation({ id, kind: 'direct', createdBy: 'a', createdAtMs: Date.now(), members: [] });
      const w = await store.openWriter(id, 1);
      const lf = latency();
      const lp = latency();
      let seq = 0;
      for (let b = 0; b < 100; b++) {
        const batch = drafts(size, `f${b}`);
        let t0 = nowUs();
        await w.append(batch);
        lf.record(nowUs() - t0);
        const queries = batch.map((d) => ({
          query: insert,
          params: [`plain-${id}`, Math.floor(++seq / BUCKET), seq, d.messageId, d.senderUser, d.senderDevice, d.clientMsgId, Buffer.from(d.body), new Date(d.sentAtMs)],
        }));
        t0 = nowUs();
        await client.batch(queries, { prepare: true, logged: false, consistency: cassandra.types.consistencies.localQuorum });
        lp.record(nowUs() - t0);
      }
      fenced.push(lf.summary().p50);
      plain.push(lp.summary().p50);
    }
    const f = median(fenced);
    const p = median(plain);
    out(`scylla batch ${size}: fenced append p50 (µs)`, fmt(f));
    out(`scylla batch ${size}: unfenced unlogged batch p50 (µs)`, fmt(p));
    out(`scylla batch ${size}: fencing cost ratio`, `${(f / p).toFixed(1)}x`);
  }
  await client.shutdown();
}

/** Per-conversation against engine-wide group commit, alternating runs, fresh store per run. */
async function groupCommit() {
  console.log('\n## embedded group commit: writer (per conversation) vs engine (engine-wide)');
  for (const inflight of [64, 512]) {
    const samples: Record<'writer' | 'engine', { rate: number[]; cpu: number[]; p50: number[]; p99: number[] }> = {
      writer: { rate: [], cpu: [], p50: [], p99: [] },
      engine: { rate: [], cpu: [], p50: [], p99: [] },
    };
    for (let r = 0; r < RUNS; r++) {
      for (const mode of ['writer', 'engine'] as const) {
        const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-'));
        const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: BUCKET, idempotencyTtlMs: 3_600_000, groupCommit: mode });
        await store.open();
        try {
          const f = await manyConversations(store, 10_000, inflight);
          samples[mode].rate.push(f.appendsPerSec);
          samples[mode].cpu.push(f.cpuUsPerAppend);
          samples[mode].p50.push(f.appendP50us);
          samples[mode].p99.push(f.appendP99us);
        } finally {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    for (const mode of ['writer', 'engine'] as const) {
      const m = samples[mode];
      out(`embedded ${inflight} in flight, groupCommit=${mode}: appends/s`, fmt(median(m.rate)));
      out(`embedded ${inflight} in flight, groupCommit=${mode}: CPU µs/append; p50 / p99 (µs)`, `${fmt(median(m.cpu))}; ${fmt(median(m.p50))} / ${fmt(median(m.p99))}`);
    }
    out(`embedded ${inflight} in flight: engine/writer appends/s ratio`, `${(median(samples.engine.rate) / median(samples.writer.rate)).toFixed(2)}x`);
  }
}

async function main() {
  console.log(`# bench/store  ${new Date().toISOString()}  ${machine()}  runs=${RUNS}`);
  if (which === 'group-commit') return groupCommit();
  if (which === 'embedded' || which === 'all') {
    const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-'));
    const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: BUCKET, idempotencyTtlMs: 3_600_000 });
    await store.open();
    try {
      await benchEngine('embedded', store, 10_000);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
    await groupCommit();
  }
  if (which === 'scylla' || which === 'all' || which === 'scylla-cost') {
    let contactPoints = process.env.TICKS_BENCH_CASSANDRA_CONTACT_POINTS?.split(',');
    const dc = 'datacenter1';
    // A Cassandra started here may deviate from the test settings: --paxos v2, --full-jit (C2).
    const paxosIdx = args.indexOf('--paxos');
    const paxos = paxosIdx >= 0 ? args[paxosIdx + 1] : undefined;
    const started = contactPoints
      ? null
      : await startCassandra({ ...(paxos ? { extraYaml: `paxos_variant: ${paxos}` } : {}), fullJit: args.includes('--full-jit') });
    if (started) {
      contactPoints = started.contactPoints;
      console.log(`(started Cassandra ${started.contactPoints.join(',')} in ${started.startMs} ms)`);
    }
    const keyspace = `ticks_bench_${Date.now().toString(36)}`;
    const store = new ScyllaStore({
      contactPoints: contactPoints!, localDataCenter: dc, keyspace,
      replication: { class: 'SimpleStrategy', replication_factor: '1' },
      readConsistency: 'localQuorum', writeConsistency: 'localQuorum', serialConsistency: 'localSerial',
      requestTimeoutMs: 30_000, connectTimeoutMs: 10_000, bucketSize: BUCKET, idempotencyTtlMs: 3_600_000,
    });
    try {
      await store.open();
      if (which === 'scylla-cost') {
        const pidIdx = args.indexOf('--cassandra-pid');
        const pid = started?.pid ?? (pidIdx >= 0 ? Number(args[pidIdx + 1]) : NaN);
        if (!Number.isInteger(pid)) throw new Error('scylla-cost against an external Cassandra needs --cassandra-pid');
        await scyllaCost(store, contactPoints!, dc, keyspace, pid, RUNS, out);
        return;
      }
      await benchEngine('scylla', store, 2_000);
      await fencingCost(store, contactPoints!, dc, keyspace);
    } finally {
      await store.close();
      await started?.stop();
    }
  }
}

await main();
