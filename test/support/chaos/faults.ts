/**
 * The faults of the chaos runs. Each `inject` starts while traffic flows and returns once the fault
 * is over (the node is back, the store is resumed...); traffic keeps flowing throughout.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChaosClient } from './client.js';
import { freeze, type ChaosCluster } from './cluster.js';
import type { RestartableRedis } from './redis.js';

export interface FaultContext {
  cluster: ChaosCluster;
  clients: ChaosClient[];
  cassandraPid: number;
  redis: RestartableRedis | undefined;
  log(line: string): void;
}

export interface Fault {
  name: string;
  inject(ctx: FaultContext): Promise<void>;
}

/** kill -9 of node `index`; started again on the same port after `downMs` (null: left dead). */
export function killNode(index: number, downMs: number | null): Fault {
  return {
    name: `kill -9 of node ${index}${downMs === null ? '' : `, restarted after ${downMs} ms`}`,
    async inject(ctx) {
      const node = ctx.cluster.nodes[index]!;
      const onIt = ctx.clients.filter((c) => c.sdk.hello?.node === node.nodeId).length;
      await node.kill9();
      ctx.log(`killed node ${index} (pid ${node.pid}) with SIGKILL; ${onIt} clients were connected to it`);
      if (downMs === null) return;
      await sleep(downMs);
      const t0 = Date.now();
      await node.start();
      ctx.log(`node ${index} started again in ${Date.now() - t0} ms`);
    },
  };
}

/** Shard thread `shard` of node `index` throws on its event loop; waits `settleMs` for the restart. */
export function crashShard(index: number, shard: number, settleMs = 1500): Fault {
  return {
    name: `crash of shard ${shard} on node ${index}`,
    async inject(ctx) {
      ctx.cluster.nodes[index]!.crashShard(shard);
      ctx.log(`asked node ${index} to crash shard ${shard}`);
      await sleep(settleMs);
    },
  };
}

/** The private Cassandra is frozen with SIGSTOP for `ms`, then resumed with SIGCONT. */
export function pauseCassandra(ms: number): Fault {
  return {
    name: `Cassandra paused (SIGSTOP) for ${ms / 1000} s`,
    async inject(ctx) {
      freeze(ctx.cassandraPid, ms);
      ctx.log(`Cassandra (pid ${ctx.cassandraPid}) stopped with SIGSTOP`);
      try {
        await sleep(ms);
      } finally {
        process.kill(ctx.cassandraPid, 'SIGCONT');
      }
      ctx.log('Cassandra resumed with SIGCONT');
    },
  };
}

/** Every client's socket is cut at once; they all reconnect (with backoff and jitter) and resync. */
export function reconnectStorm(): Fault {
  return {
    name: 'reconnect storm (every client cut at once)',
    async inject(ctx) {
      const n = ctx.clients.reduce((sum, c) => sum + c.cut(), 0);
      ctx.log(`cut ${n} sockets of ${ctx.clients.length} clients`);
    },
  };
}

/**
 * The private Redis is killed and started again empty on the same port. With `pauseNode`, that node
 * is frozen (SIGSTOP) from just before the restart for `pauseMs`: it still believes it owns its
 * conversations (its lease has not run out on its own clock) while the others, finding the
 * directory empty, register them anew with newer epochs; when it wakes up it works through what
 * queued up meanwhile with its old epochs, and only the store's fence keeps those writes out.
 */
export function redisDataLoss(opts: { downMs?: number; pauseNode?: number; pauseMs?: number } = {}): Fault {
  const pause = opts.pauseNode === undefined ? '' : ` while node ${opts.pauseNode} is frozen for ${(opts.pauseMs ?? 2000) / 1000} s (SIGSTOP)`;
  return {
    name: `Redis restart that loses all data${pause}`,
    async inject(ctx) {
      if (ctx.redis === undefined) throw new Error('the Redis data-loss fault needs cluster mode (a private Redis)');
      const node = opts.pauseNode === undefined ? undefined : ctx.cluster.nodes[opts.pauseNode]!;
      const t0 = Date.now();
      node?.pause(opts.pauseMs ?? 2000);
      try {
        const ms = await ctx.redis.restartEmpty(opts.downMs ?? 200);
        ctx.log(`Redis killed and restarted empty on port ${ctx.redis.port} (${ms} ms down)`);
        if (node) await sleep(Math.max(0, (opts.pauseMs ?? 2000) - (Date.now() - t0)));
      } finally {
        node?.resume();
      }
      if (node) ctx.log(`node ${node.index} resumed (SIGCONT) after ${Date.now() - t0} ms`);
    },
  };
}

/** Node `index` frozen with SIGSTOP for `ms` (longer than a lease: the others take its actors over). */
export function pauseNode(index: number, ms: number): Fault {
  return {
    name: `node ${index} frozen (SIGSTOP) for ${ms / 1000} s`,
    async inject(ctx) {
      const node = ctx.cluster.nodes[index]!;
      node.pause(ms);
      ctx.log(`node ${index} (pid ${node.pid}) stopped with SIGSTOP`);
      try {
        await sleep(ms);
      } finally {
        node.resume();
      }
      ctx.log(`node ${index} resumed with SIGCONT`);
    },
  };
}

/** Several faults one after another, with `gapMs` of traffic between them. */
export function sequence(faults: Fault[], gapMs: number): Fault {
  return {
    name: faults.map((f) => f.name).join(', then '),
    async inject(ctx) {
      for (const [i, f] of faults.entries()) {
        if (i > 0) await sleep(gapMs);
        ctx.log(`fault ${i + 1}/${faults.length}: ${f.name}`);
        await f.inject(ctx);
      }
    },
  };
}

/**
 * Sabotage, for checking the harness itself: node `index` is killed and started again on an empty
 * keyspace, so it forgets every acked message and hands out seqs from 1 again. A run with this
 * fault must fail (lost acked messages, conflicting seqs); if it passed, the recording would be
 * blind.
 */
export function amnesia(index: number): Fault {
  return {
    name: `sabotage: node ${index} restarted on an empty keyspace (forgets every acked message)`,
    async inject(ctx) {
      const node = ctx.cluster.nodes[index]!;
      await node.kill9();
      node.env.TICKS_STORE_SCYLLA_KEYSPACE = `${node.env.TICKS_STORE_SCYLLA_KEYSPACE}_amnesia`.slice(0, 48);
      await node.start();
      ctx.log(`node ${index} restarted on keyspace ${node.env.TICKS_STORE_SCYLLA_KEYSPACE}`);
    },
  };
}
