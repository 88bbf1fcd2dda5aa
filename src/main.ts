import { loadConfig } from './config/load.js';
import { startNode } from './node.js';

// Process entry: load the configuration, start the node, drain on SIGTERM/SIGINT. No logic here.
try {
  const node = await startNode(loadConfig(), { banner: true });
  const shutdown = (): void => {
    void node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`ticks: drain failed: ${(err as Error).stack ?? String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
} catch (err) {
  process.stderr.write(`ticks: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
