import { parentPort, workerData } from 'node:worker_threads';
import type { MainToShard, ShardInit, ShardToMain } from './shard-control.js';
import { runShard } from './shard.js';

// Worker entry of a shard thread (started by src/node.ts). A failed start is reported, then the
// thread exits non-zero; the node treats that as a failed start (or a crash, after the first start).
const init = workerData as ShardInit;
const port = parentPort!;
runShard(init, {
  post: (msg: ShardToMain) => port.postMessage(msg),
  onMessage: (fn) => port.on('message', (m: MainToShard) => fn(m)),
}).catch((err: unknown) => {
  port.postMessage({ t: 'failed', index: init.index, message: err instanceof Error ? err.message : String(err) } satisfies ShardToMain);
  process.exitCode = 1;
  port.close();
});
