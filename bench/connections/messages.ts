/** IPC between bench/connections/run.ts and its generator children. */

export interface OpenCmd {
  t: 'open';
  url: string;
  localAddress: string;
  secret: string;
  /** Users `${prefix}${i}` for i in [from, from + count), one device each. */
  prefix: string;
  from: number;
  count: number;
  /** Connections being opened at once. */
  concurrency: number;
  helloTimeoutMs: number;
  /** The whole opening phase ends after this long, whatever is left. */
  deadlineMs: number;
}

export type ToGenerator = OpenCmd | { t: 'close' };

export type FromGenerator =
  | { t: 'progress'; opened: number; failed: number }
  | {
      t: 'opened';
      opened: number;
      failed: number;
      failures: Record<string, number>;
      ms: number;
      /** Upgrade to hello, µs (HDR, encoded). */
      helloHist: string;
    }
  | { t: 'closed'; closedByServerWhileHeld: Record<string, number>; ms: number }
  | { t: 'fatal'; error: string };
