import { loadConfig } from './config/load.js';
import { startNode } from './node.js';

// Process entry: load the configuration, start the node, drain on SIGTERM/SIGINT. No logic here.
// A repeated SIGTERM is ignored (orchestrators resend it); a third SIGINT (Ctrl-C) exits at once.
try {
  const node = await startNode(loadConfig(), { banner: true });
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      process.stderr.write(`ticks: ${signal} received; still draining\n`);
      if (signal === 'SIGINT' && signals >= 3) process.exit(1);
      return;
    }
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`ticks: drain failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
} catch (err) {
  process.stderr.write(`ticks: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
