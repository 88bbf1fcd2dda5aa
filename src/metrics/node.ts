import { collectDefaultMetrics, Counter, Gauge } from 'prom-client';
import { registry } from './registry.js';
import { startThreadMetrics } from './threads.js';

/**
 * Metrics of the main thread: default process metrics (CPU, memory, handles, GC) and the
 * supervisor's. Only the main thread calls `startNodeMetrics`, so process metrics appear once.
 */
let started: ReturnType<typeof create> | undefined;
let shardsUp: () => number = () => 0;

function create() {
  collectDefaultMetrics({ register: registry });
  startThreadMetrics('main');
  return {
    shardRestarts: new Counter({
      name: 'ticks_node_shard_restarts_total',
      help: 'Shard threads restarted by the supervisor after they exited unexpectedly.',
      registers: [registry],
    }),
    shardsUp: new Gauge({
      name: 'ticks_node_shards_up',
      help: 'Shard threads currently running and accepting.',
      registers: [registry],
      collect() {
        this.set(shardsUp());
      },
    }),
  };
}

/** Idempotent; `readyShards` feeds ticks_node_shards_up (the latest node started wins). */
export function startNodeMetrics(readyShards: () => number): ReturnType<typeof create> {
  shardsUp = readyShards;
  started ??= create();
  return started;
}
