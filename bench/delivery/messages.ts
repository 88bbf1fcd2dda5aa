/** IPC between bench/delivery/run.ts (the orchestrator) and its generator children. */

export interface ConnectCmd {
  t: 'connect';
  url: string;
  /** Where the receivers connect, when not to `url` (bench/cluster: receivers on another node). */
  receiverUrl?: string;
  localAddress: string;
  secret: string;
  /** Global indices of the pairs this generator drives (sender `s<i>` -> receiver `r<i>`). */
  pairs: number[];
  /** Connections opened at once while connecting. */
  concurrency: number;
}

export interface RunCmd {
  t: 'run';
  /** msgs/s this generator sends in total (its share of the target rate). */
  rate: number;
  /** Date.now() at which the schedule starts (the same instant for every generator). */
  startAtEpochMs: number;
  warmupS: number;
  durationS: number;
  /** Longest wait after the last scheduled send for outstanding acks and deliveries. */
  graceMs: number;
  /** Makes client message ids unique per run. */
  tag: string;
}

export type ToGenerator = ConnectCmd | RunCmd | { t: 'disconnect' };

export interface RunResult {
  t: 'result';
  scheduled: number;
  /** Sends whose scheduled time was in the measured window. */
  measuredScheduled: number;
  acked: number;
  delivered: number;
  /** Deliveries that arrived inside the measured window (throughput numerator). */
  deliveredInWindow: number;
  /** Acked ("sent") but never delivered within the grace period. */
  lost: number;
  /** A message delivered again after its first delivery (same pair and index). */
  duplicates: number;
  /** `sent` frames with dup: true (a retried cmid; the generator never retries, so this should be 0). */
  dupAcks: number;
  /** Deliveries with a seq below one already seen on that conversation (not a duplicate). */
  outOfOrder: number;
  /** Neither acked nor answered with an error by the end of the grace period. */
  unanswered: number;
  errors: Record<string, number>;
  /** Unexpected socket closes during the run, by close code. */
  closes: Record<string, number>;
  receipts: number;
  /** µs from the end of the schedule to the last delivery of the run. */
  drainUs: number;
  /** This generator's own CPU time over the measured window, µs. */
  cpuUs: number;
  /** Encoded HDR histograms (µs) of messages scheduled in the measured window. */
  ackHist: string;
  deliverHist: string;
  /** How late the generator actually sent, relative to the schedule (its own lag). */
  lagHist: string;
}

export type FromGenerator =
  | { t: 'ready'; connected: number; failed: number; failures: Record<string, number>; primeMs: number }
  | RunResult
  | { t: 'disconnected' }
  | { t: 'fatal'; error: string };
