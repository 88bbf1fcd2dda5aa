/**
 * Where a persisted 1:1 message's cost goes on Cassandra: each request kind of the scylla engine's
 * append path run alone, many partitions, a fixed number in flight, with the CPU it costs Cassandra
 * (its process, all threads, /proc/<pid>/stat) and this client process per operation.
 *
 *   npm run bench:store -- scylla-cost [--runs 3] [--cassandra-pid PID]
 *
 * Request kinds (one message each, the 1:1 case where a group commit carries one message):
 * - read: the idempotency lookup (`SELECT .. WHERE conv = ? AND (device, cmid) IN ?`);
 * - write: the reservation / head hint (a plain single-partition write);
 * - lwt: the fenced conditional batch (`UPDATE .. SET epoch = ? IF epoch = ?` + `INSERT .. IF NOT
 *   EXISTS`), i.e. one Paxos round;
 * - append: the store's whole append of one message (lookup + reservation + lwt + head hint).
 *
 * The Cassandra CPU per op is the figure that sets the ceiling on a box where Cassandra and the node
 * share the cores: msgs/s <= cores * 1e6 / (cassandra µs/msg + node µs/msg).
 */
import { randomUUID } from 'node:crypto';
import cassandra from 'cassandra-driver';
import type { Store } from '../../src/store/store.js';
import { statements } from '../../src/store/scylla/cql.js';
import { processCpuUs } from '../lib/proc.js';
import { median, nowUs, pool } from '../lib/stats.js';
import { drafts } from './workloads.js';

export interface CostFigures {
  opsPerSec: number;
  cassandraUsPerOp: number;
  clientUsPerOp: number;
}

const { consistencies } = cassandra.types;

async function measure(cassandraPid: number, count: number, inflight: number, fn: (i: number) => Promise<void>): Promise<CostFigures> {
  const c0 = processCpuUs(cassandraPid);
  const p0 = process.cpuUsage();
  const t0 = nowUs();
  await pool(count, inflight, fn);
  const secs = (nowUs() - t0) / 1e6;
  const p = process.cpuUsage(p0);
  const c1 = processCpuUs(cassandraPid);
  return {
    opsPerSec: count / secs,
    cassandraUsPerOp: c0 !== null && c1 !== null ? (c1 - c0) / count : NaN,
    clientUsPerOp: (p.user + p.system) / count,
  };
}

export async function scyllaCost(
  store: Store,
  contactPoints: string[],
  dc: string,
  keyspace: string,
  cassandraPid: number,
  runs: number,
  out: (name: string, value: string) => void,
): Promise<void> {
  const client = new cassandra.Client({ contactPoints, localDataCenter: dc, keyspace });
  await client.connect();
  const cql = statements(keyspace);
  const w = { prepare: true, consistency: consistencies.localQuorum, serialConsistency: consistencies.localSerial };
  const COUNT = 2000;
  const INFLIGHT = 32;
  const body = Buffer.alloc(100, 7);
  const kinds: Record<string, (tag: string) => Promise<(i: number) => Promise<void>>> = {
    read: async (tag) => async (i) => {
      await client.execute(cql.selectIdempotency, [`${tag}-${i}`, [new cassandra.types.Tuple('dev', `cm-${i}`)]], { ...w, consistency: consistencies.localQuorum });
    },
    write: async (tag) => async (i) => {
      await client.execute(cql.insertIdempotency, [`${tag}-${i}`, 'dev', `cm-${i}`, 1, `m-${i}`, 3600], w);
    },
    lwt: async (tag) => {
      // Each partition's static epoch is claimed first (not timed), as openWriter would.
      await pool(COUNT, INFLIGHT, async (i) => {
        await client.execute(cql.claimBucketEpoch, [1, `${tag}-${i}`, 0], w);
      });
      return async (i) => {
        const rs = await client.batch(
          [
            { query: cql.fenceBucket, params: [1, `${tag}-${i}`, 0, 1] },
            { query: cql.insertMessage, params: [`${tag}-${i}`, 0, 1, `m-${i}`, 'alice', 'dev', `cm-${i}`, body, new Date()] },
          ],
          { ...w, logged: false },
        );
        if (!rs.wasApplied()) throw new Error('bench: fenced batch not applied');
      };
    },
    append: async (tag) => {
      const ids = Array.from({ length: COUNT }, (_, i) => `${tag}-${i}`);
      await pool(COUNT, INFLIGHT, async (i) => {
        await store.createConversation({ id: ids[i]!, kind: 'direct', createdBy: 'alice', createdAtMs: Date.now(), members: [] });
      });
      const writers = new Array<Awaited<ReturnType<Store['openWriter']>>>(COUNT);
      await pool(COUNT, INFLIGHT, async (i) => {
        writers[i] = await store.openWriter(ids[i]!, 1);
      });
      return async (i) => {
        await writers[i]!.append(drafts(1, `c${i}`));
      };
    },
  };
  for (const [kind, prepare] of Object.entries(kinds)) {
    const samples: CostFigures[] = [];
    for (let r = 0; r < runs; r++) {
      const fn = await prepare(`cost-${kind}-${randomUUID().slice(0, 8)}`);
      samples.push(await measure(cassandraPid, COUNT, INFLIGHT, fn));
    }
    const m = (f: (c: CostFigures) => number) => Math.round(median(samples.map(f))).toLocaleString('en-US');
    out(`scylla cost ${kind} (${INFLIGHT} in flight): ops/s`, m((c) => c.opsPerSec));
    out(`scylla cost ${kind}: Cassandra CPU µs/op; client CPU µs/op`, `${m((c) => c.cassandraUsPerOp)}; ${m((c) => c.clientUsPerOp)}`);
  }
  await client.shutdown();
}
