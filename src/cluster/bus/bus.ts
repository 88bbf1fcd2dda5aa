import { ClusterError } from '../errors.js';

/**
 * The node bus: directed frames from one node to another, one channel per node.
 *
 * Contract (every implementation, checked by test/contract/bus.test.ts):
 *
 * - **At-most-once.** A frame is delivered to the target node zero or one time. Frames are lost when
 *   the target is not subscribed, while its subscriber reconnects, or when Redis restarts. Nothing is
 *   retried or persisted here: reliability lives in actor acks and retries (DESIGN.md 2.4), and a
 *   receiver dedupes what a retry sends twice.
 * - **No ordering guarantee across reconnects.** Frames from one publisher to one node arrive in
 *   publish order while both stay connected; around a reconnect, frames may be missing. Never rely on
 *   order for correctness (seq numbers do that).
 * - **Opaque bytes.** Frames are msgpack-encoded by the caller; the bus copies them exactly, every byte
 *   value, and never decodes them. The handler owns the bytes it is given.
 * - **publish resolves once the transport accepted the frame** and returns how many subscribers
 *   received it. 0 means nobody listened on that node's channel (the node is gone or not yet
 *   subscribed): a result to act on (re-resolve the directory), never an error.
 * - **Errors are ClusterErrors.** `cluster.unavailable` (retryable) when the transport is down or the
 *   bus is closed, also when the bounded queue of pending publishes (`maxPendingPublishes`) is full:
 *   such a publish is rejected at once, nothing is queued, so a dead Redis costs memory bounded by
 *   that limit and surfaces within the connect/command timeouts, never as a hang. `cluster.timeout`
 *   (retryable) when no reply came in time: the frame may or may not have gone out. `cluster.invalid`
 *   for a bad node id or a second handler for one node.
 * - **Fan-out is one publish per distinct node.** A conversation with members on several nodes sends
 *   one frame per (conversation, node) through `publishMany`, never one per member: the receiving
 *   node fans out to its local members.
 */
export interface Bus {
  /**
   * Starts delivering frames addressed to `node` (the local node) to `onFrame`. Resolves once the
   * subscription is active: a publish issued after that reaches the handler while the transport
   * stays up. One handler per node per Bus. The handler runs synchronously on the receiving thread;
   * it should only enqueue; a throw is reported through the bus's `onHandlerError` and the frame is
   * dropped, later frames are still delivered.
   */
  subscribe(node: string, onFrame: FrameHandler): Promise<BusSubscription>;

  /** Sends one frame to `targetNode`. Resolves with the number of subscribers that received it. */
  publish(targetNode: string, bytes: Uint8Array): Promise<number>;

  /**
   * Sends one frame to each distinct node in `targets` (duplicates are removed first). Resolves with
   * the receivers per node once every publish was accepted. If any publish fails, rejects with the
   * first ClusterError after all were attempted: frames to the other nodes may have gone out, which
   * is harmless because a retry of the whole fan-out is deduped by the receivers.
   */
  publishMany(targets: Iterable<string>, bytes: Uint8Array): Promise<Map<string, number>>;

  /** Unsubscribes everything and releases connections. Idempotent. Later publishes reject. */
  close(): Promise<void>;
}

export type FrameHandler = (bytes: Uint8Array) => void;

export interface BusSubscription {
  readonly node: string;
  /** Stops delivery to this handler; frames already handed over are not recalled. Idempotent. */
  unsubscribe(): Promise<void>;
}

/**
 * Which traffic a bus carries: the node frames of the actors (`frames`, channel `node:<id>`) or
 * presence and typing events (`presence`, channel `presence:node:<id>`). Separate channels keep the
 * two streams apart (a node can drop presence under load without touching delivery) and label the
 * bus metrics, a closed set.
 */
export type BusPurpose = 'frames' | 'presence';

const CHANNEL_NAMESPACE: Record<BusPurpose, string> = { frames: 'node:', presence: 'presence:node:' };

/** The channel of `node` under `prefix` (pub/sub channels are not keys: ioredis never prefixes them). */
export function nodeChannel(prefix: string, purpose: BusPurpose, node: string): string {
  return `${prefix}${CHANNEL_NAMESPACE[purpose]}${node}`;
}

/** Default bound of publishes awaiting the transport's reply (including while disconnected). */
export const DEFAULT_MAX_PENDING_PUBLISHES = 10_000;

const NODE_ID = /^[A-Za-z0-9._:/-]{1,128}$/;

/** Node ids are short and printable so a channel name is always well formed. */
export function assertNodeId(node: string): void {
  if (!NODE_ID.test(node)) throw new ClusterError('cluster.invalid', `invalid node id ${JSON.stringify(node)}`);
}

/** Distinct targets in first-seen order. */
export function distinctNodes(targets: Iterable<string>): string[] {
  return [...new Set(targets)];
}

/**
 * `publishMany` for any implementation: one `publish` per distinct node, all started at once (over
 * Redis they are pipelined: one round trip in all); every node is tried, then the first failure is
 * thrown, else the receivers per node are returned.
 */
export async function publishToEach(
  targets: Iterable<string>,
  publish: (node: string) => Promise<number>,
): Promise<Map<string, number>> {
  const nodes = distinctNodes(targets);
  const settled = await Promise.allSettled(nodes.map(publish));
  const out = new Map<string, number>();
  for (let i = 0; i < nodes.length; i++) {
    const s = settled[i]!;
    if (s.status === 'rejected') throw s.reason;
    out.set(nodes[i]!, s.value);
  }
  return out;
}
