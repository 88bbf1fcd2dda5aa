/** IPC between bench/fanout/run.ts (the orchestrator) and its receiver children (receiver.ts). */

export interface ConnectCmd {
  t: 'connect';
  /** WebSocket URL per node; receiver user i of this child connects to urls[nodeOf[i]]. */
  urls: string[];
  localAddress: string;
  secret: string;
  /** The users this child connects (one device `d1` each). */
  users: string[];
  /** Index into `urls` per user. */
  nodeOf: number[];
  /** Index of the bench conversation per user (it gets the messages k with k % convs === convOf). */
  convOf: number[];
  concurrency: number;
  /** Cumulative dacks per socket at most this often, from connect on (the SDK batches them every 100 ms). */
  dackMs: number;
}

export interface JoinCmd {
  t: 'join';
  /** Channel ids by conversation index: user i joins convs[convOf[i]]. */
  convs: string[];
  /** conv.join requests in flight per child. */
  concurrency: number;
}

export interface ArmCmd {
  t: 'arm';
  /** Conversations the bench posts to: message k goes to conversation k % convs. */
  convs: number;
  /** Run tag written into every body (deliveries of an earlier run are not counted). */
  tag: number;
  /** Messages the sender will post (indices 0..messages-1). */
  messages: number;
  /** Epoch µs of the measured window (deliveries/s counts deliveries that arrive inside it). */
  measureFromUs: number;
  measureToUs: number;
  /** The server's first redelivery delay (actors.deliveryRetryMs). */
  retryMs: number;
}

export interface ReportCmd {
  t: 'report';
  /** Message indices the server acknowledged (`sent`): each must reach every receiver exactly once. */
  acked: number[];
  /**
   * Wait until every receiver has every acked message, or until no delivery arrived for `stallMs`
   * (a backlog still draining is waited for), or this hard deadline (epoch ms).
   */
  untilEpochMs: number;
  stallMs: number;
}

export type ToReceiver = ConnectCmd | JoinCmd | ArmCmd | ReportCmd | { t: 'disconnect' };

export interface RunReport {
  t: 'report';
  receivers: number;
  /** Deliveries of the bench's messages, in all and inside the measured window. */
  delivered: number;
  deliveredInWindow: number;
  /**
   * A (receiver, message) delivered more than once. `retried`: the copy came at least
   * `retryMs` after the first, while the receiver's dack may not have reached the server (a
   * redelivery the protocol makes on purpose: at-least-once, deduped by the client); the others are
   * `duplicates` proper (must be 0).
   */
  duplicates: number;
  retried: number;
  /** (receiver, acked message) pairs never delivered. */
  missing: number;
  /** Receivers that missed at least one acked message, and a few examples (`user:index`). */
  receiversMissing: number;
  missingExamples: string[];
  /** A message arriving with a lower index than one already seen on that socket. */
  outOfOrder: number;
  /** Deliveries of a message the sender never had acked (allowed: at-least-once; counted). */
  unackedDelivered: number;
  /** Per message index: the latest send->delivery latency among this child's receivers, µs (-1: none). */
  lastUs: number[];
  /** Per message index: how many of this child's receivers got it. */
  countOf: number[];
  /** HDR histogram (µs) of every send->delivery latency of messages scheduled in the window. */
  deliveryHist: string;
  dacksSent: number;
  /** A bench message delivered to a receiver outside its conversation (must be 0). */
  foreign: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  /** Other frames received after arm, by type (membership events, receipts, ...). */
  frames: Record<string, number>;
  /** msg frames that were not bench messages (membership events, other conversations). */
  otherMsgs: number;
  cpuUs: number;
  /** Socket reads from arm to the report, and their bytes (deliveries per read shows the server's batching). */
  reads: number;
  readBytes: number;
}

export type FromReceiver =
  | { t: 'ready'; connected: number; failed: number; failures: Record<string, number>; ms: number }
  | { t: 'joined'; ok: number; failed: number; failures: Record<string, number>; ms: number }
  | { t: 'armed' }
  | RunReport
  | { t: 'disconnected' }
  | { t: 'fatal'; error: string };
