import { Counter, Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';

/**
 * Push metrics. `provider` is one of PUSH_PROVIDERS, `result` a SendOutcome or one of the fixed
 * job/notify results below: closed sets, never a user or device id.
 */
export const pushMetrics = {
  notify: new Counter({
    name: 'ticks_push_notify_total',
    help: 'Push requests for a user with no online device, by result (enqueued: a new push job; collapsed: folded into this window\'s push; error: the enqueue failed).',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  wakeChecks: new Counter({
    name: 'ticks_push_wake_checks_total',
    help: "Cluster fan-outs' push decisions per (message batch, receiving user), from the session lookup the fan-out makes anyway: offline (no live device on any node: push requested), online (a live device somewhere: no push job; a node whose sockets turn out gone asks itself), lookup_failed (push requested; the job checks again).",
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  jobs: new Counter({
    name: 'ticks_push_jobs_total',
    help: 'Push job attempts by result (sent, no_devices, nothing_unread, retry: some devices will be retried, error).',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  sent: new Counter({
    name: 'ticks_push_sent_total',
    help: 'Notifications handed to a provider, by provider and result (sent, unregistered: token removed, retry, error, unconfigured: no credentials for that provider).',
    labelNames: ['provider', 'result'] as const,
    registers: [registry],
  }),
  sendDuration: new Histogram({
    name: 'ticks_push_send_duration_seconds',
    help: 'Duration of one provider send, by provider.',
    labelNames: ['provider'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  }),
  tokenRequests: new Counter({
    name: 'ticks_push_token_requests_total',
    help: 'PUT and DELETE /push-token requests, by method (put, delete) and HTTP status.',
    labelNames: ['method', 'status'] as const,
    registers: [registry],
  }),
  tokensRemoved: new Counter({
    name: 'ticks_push_tokens_removed_total',
    help: 'Push tokens removed because the provider said they are dead, by provider.',
    labelNames: ['provider'] as const,
    registers: [registry],
  }),
};
for (const result of ['offline', 'online', 'lookup_failed'] as const) pushMetrics.wakeChecks.inc({ result }, 0);
