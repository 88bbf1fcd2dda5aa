import { pino, type Logger } from 'pino';
import type { Config } from '../config/schema.js';

/**
 * Structured JSON logs (pino) on stdout, one line per event. Every line carries the node id and the
 * thread (`main` or `shard-<n>`), so the merged stream of a node's threads stays attributable.
 * pino writes synchronously to fd 1 from any thread, so lines from shard threads are not lost when a
 * shard crashes.
 */
export type { Logger };

export interface LogOptions {
  level: Config['log']['level'];
  node: string;
  thread: string;
}

export function createLogger(o: LogOptions): Logger {
  return pino({
    level: o.level,
    base: { pid: process.pid, node: o.node, thread: o.thread },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
