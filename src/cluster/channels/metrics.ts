import { Counter, Gauge } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import { opInstrument } from '../instrument.js';

export type InterestOp = 'add' | 'remove' | 'refresh' | 'list';

/** Times one channel-interest registry operation; only ClusterErrors escape (see opInstrument). */
export const instrument = opInstrument<InterestOp>(
  'ticks_channel_interest_op_duration_seconds',
  'Duration of channel-interest registry operations by operation, implementation and result (ok or the error code).',
);

const registers = [registry];

/** Where a channel publish went: another node (bus), another shard of this node (link), a uWS topic. */
export type PublishScope = 'node' | 'shard' | 'topic';
export type PublishResult = 'sent' | 'no_receiver' | 'failed';

/**
 * Live channel delivery of one shard thread (src/cluster/channel-delivery.ts). Labels are closed
 * sets; never a channel or user id.
 */
export const channelMetrics = {
  publishes: new Counter({
    name: 'ticks_channel_publishes_total',
    help: 'Channel post batches sent on, by scope (node: one bus publish per node with subscribers; shard: one link post per other shard of the node; topic: one uWS topic publish per message on this thread) and result.',
    labelNames: ['scope', 'result'] as const,
    registers,
  }),
  topicMessages: new Counter({
    name: 'ticks_channel_topic_messages_total',
    help: 'Channel msg frames published to uWS topics on this thread (each encoded once, whatever the number of subscribers).',
    registers,
  }),
  subscriptions: new Gauge({
    name: 'ticks_channel_topic_subscriptions',
    help: 'Socket subscriptions to channel topics on this thread (one per socket and channel).',
    registers,
  }),
  topics: new Gauge({
    name: 'ticks_channel_topics',
    help: 'Channels with at least one subscriber socket on this thread (its entries in the channel-interest registry).',
    registers,
  }),
  subscriptionChanges: new Counter({
    name: 'ticks_channel_subscription_changes_total',
    help: 'Socket subscriptions to channel topics added or removed, by operation and cause (open: session opened; membership: join or leave; close: socket closed).',
    labelNames: ['op', 'cause'] as const,
    registers,
  }),
  openFailures: new Counter({
    name: 'ticks_channel_open_failures_total',
    help: "New sessions closed (4004, reconnect) because their channels could not be read from the store.",
    registers,
  }),
  interestErrors: new Counter({
    name: 'ticks_channel_interest_errors_total',
    help: 'Channel-interest registry calls of the delivery path that failed (soft state: the next heartbeat repairs), by operation.',
    labelNames: ['op'] as const,
    registers,
  }),
};
