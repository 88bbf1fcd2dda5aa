import { Counter } from 'prom-client';
import { registry } from '../../metrics/registry.js';

/** Presence metrics; labels are closed sets (never a user or conversation id). */
const updates = new Counter({
  name: 'ticks_presence_updates_total',
  help: 'Presence writes by state (online: lease started or renewed, offline: lease ended).',
  labelNames: ['state'] as const,
  registers: [registry],
});

const watches = new Counter({
  name: 'ticks_presence_watch_total',
  help: 'Watch calls of connections (users or conversations), by result (ok or over_cap).',
  labelNames: ['result'] as const,
  registers: [registry],
});

const events = new Counter({
  name: 'ticks_presence_events_total',
  help: 'Presence events published to watching nodes (one per event, not per node), by type.',
  labelNames: ['type'] as const,
  registers: [registry],
});

export type PresenceEventType = 'online' | 'offline' | 'typing' | 'paused';

export const presenceMetrics = {
  update(state: 'online' | 'offline'): void {
    updates.inc({ state });
  },
  watch(result: 'ok' | 'over_cap'): void {
    watches.inc({ result });
  },
  event(type: PresenceEventType): void {
    events.inc({ type });
  },
};
