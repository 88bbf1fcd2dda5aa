/**
 * Metrics of the actor layer. Labels come from closed sets only (actor kind, result codes), never a
 * user, device or conversation id.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import { FastHistogram } from '../metrics/fast-histogram.js';
import { registry } from '../metrics/registry.js';

const registers = [registry];

/**
 * Hot-path tallies kept as plain numbers and read by their metrics at scrape time (`collect`): a
 * prom-client update costs 0.1-0.3 µs, and a group fan-out makes a mailbox message and a pending
 * delivery per member device.
 */
export interface MailboxTally {
  /** Messages queued now. */
  depth: number;
  /** Messages processed since the last scrape. */
  messages: number;
}
const mailboxTallies = new Map<string, MailboxTally>();
/** The tally of one actor kind, shared by all its mailboxes. */
export function mailboxTally(kind: string): MailboxTally {
  let t = mailboxTallies.get(kind);
  if (t === undefined) mailboxTallies.set(kind, (t = { depth: 0, messages: 0 }));
  return t;
}
/** Deliveries pushed and not yet acknowledged on this thread (src/actors/pending.ts). */
export const pendingTally = { deliveries: 0 };
/** Dacks forwarded to conversation actors and the coalesced messages carrying them (src/actors/dack-batcher.ts). */
export const dackTally = { forwarded: 0, batches: 0 };

const fastBuckets = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export const actorMetrics = {
  mailboxDepth: new Gauge({
    name: 'ticks_actor_mailbox_depth',
    help: 'Messages waiting in actor mailboxes, summed over the actors of a kind.',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      for (const [kind, t] of mailboxTallies) this.set({ kind }, t.depth);
    },
  }),
  mailboxWait: new FastHistogram({
    name: 'ticks_actor_mailbox_wait_seconds',
    help: 'Time a message waited in an actor mailbox before it was processed.',
    labelNames: ['kind'] as const,
    buckets: fastBuckets,
    registers,
  }),
  messages: new Counter({
    name: 'ticks_actor_messages_total',
    help: 'Messages processed by actors.',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      for (const [kind, t] of mailboxTallies) {
        if (t.messages > 0) this.inc({ kind }, t.messages);
        t.messages = 0;
      }
    },
  }),
  active: new Gauge({
    name: 'ticks_actor_active',
    help: 'Actors currently activated on this shard.',
    labelNames: ['kind'] as const,
    registers,
  }),
  activations: new Counter({
    name: 'ticks_actor_activations_total',
    help: 'Actor activations (state loaded).',
    labelNames: ['kind'] as const,
    registers,
  }),
  passivations: new Counter({
    name: 'ticks_actor_passivations_total',
    help: 'Actor deactivations (idle passivation, fencing loss, drain).',
    labelNames: ['kind'] as const,
    registers,
  }),
  rejected: new Counter({
    name: 'ticks_actor_rejected_total',
    help: 'Messages an actor could not take: mailbox_full, activation_failed or shutting_down.',
    labelNames: ['kind', 'reason'] as const,
    registers,
  }),
  handlerErrors: new Counter({
    name: 'ticks_actor_handler_errors_total',
    help: 'Unexpected exceptions thrown by actor message handlers (bugs; each is logged).',
    labelNames: ['kind'] as const,
    registers,
  }),
  dacksForwarded: new Counter({
    name: 'ticks_actor_dacks_forwarded_total',
    help: 'Dacks user actors forwarded to conversation actors (before coalescing, src/actors/dack-batcher.ts).',
    registers,
    collect() {
      if (dackTally.forwarded > 0) this.inc(dackTally.forwarded);
      dackTally.forwarded = 0;
    },
  }),
  dackBatches: new Counter({
    name: 'ticks_actor_dack_batches_total',
    help: 'Coalesced delivered messages sent to conversation actors (one per conversation per event-loop turn with dacks).',
    registers,
    collect() {
      if (dackTally.batches > 0) this.inc(dackTally.batches);
      dackTally.batches = 0;
    },
  }),
  linkFrames: new Counter({
    name: 'ticks_actor_link_frames_total',
    help: 'Thread frames between shard threads, by frame type and direction (in, out, invalid).',
    labelNames: ['type', 'direction'] as const,
    registers,
  }),
};

export const convMetrics = {
  sent: new Counter({
    name: 'ticks_messages_sent_total',
    help: 'Client sends by outcome (ok, duplicate, or the error code returned).',
    labelNames: ['result'] as const,
    registers,
  }),
  commitBatch: new Histogram({
    name: 'ticks_conv_commit_batch_size',
    help: 'Messages per group commit.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
    registers,
  }),
  fanoutHeld: new Counter({
    name: 'ticks_conv_fanout_held_messages_total',
    help: 'Group messages held by the fan-out window (groups.fanoutWindowMs) to go out with later ones, instead of at their commit.',
    registers,
  }),
  commitDuration: new Histogram({
    name: 'ticks_conv_commit_duration_seconds',
    help: 'Duration of group commits, by result (ok or the store error code).',
    labelNames: ['result'] as const,
    buckets: fastBuckets,
    registers,
  }),
  ops: new Counter({
    name: 'ticks_conv_ops_total',
    help: 'Group/channel operations (create, add, remove, role, leave, join, meta) by outcome (ok or the error code returned).',
    labelNames: ['op', 'result'] as const,
    registers,
  }),
  repairs: new Counter({
    name: 'ticks_conv_member_repairs_total',
    help: 'Activations that found the pending-rows marker and replayed membership events onto the member rows.',
    registers,
  }),
};

export const deliveryMetrics = {
  pushed: new Counter({
    name: 'ticks_delivery_pushed_total',
    help: 'Message frames pushed to devices (first attempts and retries).',
    registers,
  }),
  acked: new Counter({
    name: 'ticks_delivery_acked_total',
    help: 'Pending deliveries cleared by a device acknowledgement.',
    registers,
  }),
  retries: new Counter({
    name: 'ticks_delivery_retries_total',
    help: 'Deliveries pushed again because the device had not acknowledged them in time.',
    registers,
  }),
  gaveUp: new Counter({
    name: 'ticks_delivery_disconnects_total',
    help: 'Devices disconnected (4001) to resync, by reason (max_retries, too_many_pending, overloaded).',
    labelNames: ['reason'] as const,
    registers,
  }),
  latency: new FastHistogram({
    name: 'ticks_delivery_latency_seconds',
    help: 'Time from the first push of a message to a device until the device acknowledged it.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  }),
  pending: new Gauge({
    name: 'ticks_delivery_pending',
    help: 'Deliveries pushed and not yet acknowledged on this shard.',
    registers,
    collect() {
      this.set(pendingTally.deliveries);
    },
  }),
  cursorFlushes: new Counter({
    name: 'ticks_delivery_cursor_flushes_total',
    help: 'Batched delivered-cursor writes, by result (ok, error).',
    labelNames: ['result'] as const,
    registers,
  }),
};

export const syncMetrics = {
  requests: new Counter({
    name: 'ticks_sync_requests_total',
    help: 'Sync and history requests by type and result (ok or the error code).',
    labelNames: ['type', 'result'] as const,
    registers,
  }),
  messages: new Counter({
    name: 'ticks_sync_messages_total',
    help: 'Messages sent to devices in sync.batch frames.',
    registers,
  }),
};
