import type { MessagePort } from 'node:worker_threads';
import type { VerifyOutcome } from './auth/verify.js';
import type { Config } from './config/schema.js';
import type { ThreadMetrics } from './metrics/threads.js';

/**
 * Control messages between the node's main thread (src/node.ts) and its shard threads
 * (src/shard.ts), over the worker's parent port. Actor traffic between shards does not pass here:
 * it goes shard to shard over the MessageChannel mesh (ShardLink).
 *
 * Requests carry a `req` id, unique per sender, echoed by the answer.
 */

/** workerData of a shard thread. */
export interface ShardInit {
  index: number;
  shardCount: number;
  /** Restarts of this shard index so far; makes connection ids unique across incarnations. */
  generation: number;
  nodeId: string;
  /** Random per process start, the same for every shard thread (src/cluster/routing.ts, "Identity"). */
  incarnation: string;
  config: Config;
  /** The resolved port (never 0: every shard must bind the same one). */
  port: number;
  hs256Secret: string | undefined;
  /** Whether EdDSA/ES256 tokens can be verified (public keys configured; main runs the pool). */
  publicKeys: boolean;
  /** peers[j] is the port to shard j (null for the shard itself). */
  peers: (MessagePort | null)[];
  /** Honour `test.crash` (integration tests only; set by startNode's options, never by config). */
  testHooks: boolean;
}

export type MainToShard =
  /** Shard `peer` restarted: reach it through this port from now on (and re-attach its users' sessions). */
  | { t: 'peer'; peer: number; port: MessagePort }
  | { t: 'verified'; req: number; outcome: VerifyOutcome | null; error?: string }
  /** Post this thread's metrics as JSON (for a merged scrape). */
  | { t: 'collect-metrics'; req: number }
  /** The merged scrape the shard asked for with `metrics-request`. */
  | { t: 'metrics-text'; req: number; text: string | null; error?: string }
  /** Drain step 1: close the listen socket (readyz turns 503); open sessions stay. */
  | { t: 'stop-accepting' }
  /** Drain step 2: close sessions with 4000, drain actors within `timeoutMs`, close the store and every socket. */
  | { t: 'drain'; timeoutMs: number }
  /** Test hook: throw an uncaught error on the shard's event loop. */
  | { t: 'test-crash' }
  /** Embedded-mode presence (src/cluster/presence/port-presence.ts): the answer to a presence-call. */
  | { t: 'presence-result'; req: number; value?: unknown; error?: string }
  /** Embedded-mode presence: an event for this shard's endpoint `node`. */
  | { t: 'presence-frame'; node: string; bytes: Uint8Array };

export type ShardToMain =
  | { t: 'ready'; index: number }
  /** Embedded-mode presence: an operation on the node's presence state (kept by the main thread). */
  | { t: 'presence-call'; req: number; op: string; args: unknown[] }
  /** Embedded-mode presence: an event for the shard endpoint `node` of this node. */
  | { t: 'presence-publish'; node: string; bytes: Uint8Array }
  /** The shard crashed: it stopped accepting and is closing its sockets before it exits (not ready). */
  | { t: 'dying'; index: number }
  | { t: 'failed'; index: number; message: string }
  | { t: 'verify'; req: number; token: string }
  | { t: 'metrics'; req: number; metrics: ThreadMetrics }
  | { t: 'metrics-request'; req: number }
  | { t: 'stopped-accepting' }
  | { t: 'drained'; timedOut: boolean };
