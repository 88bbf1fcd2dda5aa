/**
 * A ticks node as its own OS process for the chaos harness: src/main.ts's start-up (configuration
 * from TICKS_* variables, validated by the loader) with the test hooks on, so the harness can crash
 * a shard thread by writing `crash <index>` on stdin. Prints `CHAOS-READY {json}` on stdout once
 * listening. SIGTERM drains like main.ts; SIGKILL is the point of the exercise.
 */
import { createInterface } from 'node:readline';
import { loadConfig } from '../../../src/config/load.js';
import { startNode } from '../../../src/node.js';

try {
  const node = await startNode(loadConfig(), { testHooks: true });
  process.stdout.write(`CHAOS-READY ${JSON.stringify({ nodeId: node.nodeId, port: node.port, shards: node.shards })}\n`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'crash') node.crashShard(Number(arg ?? 0));
  });
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`chaos node: drain failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  });
} catch (err) {
  process.stderr.write(`chaos node: cannot start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
