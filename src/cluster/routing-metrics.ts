import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry.js';

/**
 * Metrics of cross-node routing (src/cluster/routing.ts and the modules it names), per shard
 * thread, merged per node. Labels are closed sets; never a conversation, user or node id.
 */
export type ConvRouteResult =
  /** Delivered to the local activation (this thread holds the lease). */
  | 'local'
  /** Registered with the directory and activated here. */
  | 'registered'
  /** Published to the owning thread of another node. */
  | 'forwarded'
  /** The owner's channel had no subscriber (node gone): re-resolved. */
  | 'no_receiver'
  /** Answered cluster_unavailable: the directory or bus failed, too many hops, or draining with no owner. */
  | 'unavailable';

const registers = [registry];

export const routingMetrics = {
  convRoutes: new Counter({
    name: 'ticks_cluster_conv_routes_total',
    help: 'Conversation messages routed by the home shard of this node, by outcome.',
    labelNames: ['result'] as const,
    registers,
  }),
  owned: new Gauge({
    name: 'ticks_cluster_owned_conversations',
    help: 'Conversations whose directory lease this node holds.',
    registers,
  }),
  leasesLost: new Counter({
    name: 'ticks_cluster_leases_lost_total',
    help: 'Conversation leases lost, by reason: taken_over (renew answered false) or expired (no successful renew within the lease on the local clock).',
    labelNames: ['reason'] as const,
    registers,
  }),
  handedOff: new Counter({
    name: 'ticks_cluster_handed_off_messages_total',
    help: 'Messages a conversation activation held when its lease was lost, routed again to the new owner, by type (the conversation message type: send, delivered, read, op, members, receipts).',
    labelNames: ['type'] as const,
    registers,
  }),
  nodeClaims: new Counter({
    name: 'ticks_cluster_node_claims_total',
    help: 'Claims of a shard endpoint (node id + shard) by this process, by result: won, won_after_wait (a predecessor killed without draining), refused (a live process holds the node id: start-up fails), reclaimed (lost in the directory, claimed again), lost (another process holds it).',
    labelNames: ['result'] as const,
    registers,
  }),
  released: new Counter({
    name: 'ticks_cluster_leases_released_total',
    help: 'Conversation leases given back to the directory, by reason: idle or drain.',
    labelNames: ['reason'] as const,
    registers,
  }),
  heartbeats: new Counter({
    name: 'ticks_cluster_heartbeats_total',
    help: 'Heartbeats (lease renewals plus session refreshes) of the shard threads, by result: ok or failed.',
    labelNames: ['result'] as const,
    registers,
  }),
  nodeFrames: new Counter({
    name: 'ticks_cluster_node_frames_total',
    help: 'Frames published to other nodes, by type (actor, push, close, users) and result (sent, no_receiver, failed).',
    labelNames: ['type', 'result'] as const,
    registers,
  }),
  fanOutNodes: new Counter({
    name: 'ticks_cluster_fanout_nodes_total',
    help: 'Remote nodes reached by user fan-outs (deliveries and receipts): one frame per (fan-out, node).',
    registers,
  }),
  presenceUpdates: new Counter({
    name: 'ticks_cluster_presence_updates_total',
    help: 'Online leases set or renewed by this node, by result (ok or failed).',
    labelNames: ['result'] as const,
    registers,
  }),
  sessionOps: new Counter({
    name: 'ticks_cluster_session_ops_total',
    help: 'Session registry writes of this node, by op (put, remove, refresh) and result (ok or failed).',
    labelNames: ['op', 'result'] as const,
    registers,
  }),
};
