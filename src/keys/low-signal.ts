import type { SessionRef } from '../actors/session.js';
import { parseRegistryConn } from '../cluster/thread-sessions.js';
import type { SessionRegistry } from '../cluster/sessions/sessions.js';
import type { Logger } from '../lib/log.js';
import type { KeysLowFrame } from '../protocol/client-frames.js';
import { lowPushes } from './metrics.js';

/**
 * The low-prekey signal over the WebSocket: when another device's fetch leaves a device with fewer
 * than `keys.lowThreshold` one-time prekeys (src/keys/http.ts `onLow`), the device's live session, on
 * whatever node and shard thread holds it (the session registry says), gets a `keys.low` frame
 * `{t: 'keys.low', remaining, threshold}` and should upload more with PUT /keys.
 *
 * Best effort, like presence: a device that is offline (or whose registry lookup fails) learns it
 * from `low: true` in its next PUT /keys or GET /keys answer, which clients check at start-up. At most
 * one frame per device per `minIntervalMs` from one thread, so a burst of fetches (a group's members
 * all starting sessions with it) does not turn into a burst of lookups and frames.
 */
export interface KeysLowDeps {
  sessions: Pick<SessionRegistry, 'list'>;
  /** Pushes a server frame to a session on any node (the actors' router). */
  push(session: SessionRef, frame: KeysLowFrame): void;
  threshold: number;
  log: Logger;
  minIntervalMs?: number;
  now?: () => number;
}

const DEFAULT_MIN_INTERVAL_MS = 10_000;
const RECENT_CAPACITY = 10_000;

export function keysLowNotifier(d: KeysLowDeps): (user: string, device: string, remaining: number) => void {
  const now = d.now ?? Date.now;
  const minInterval = d.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
  const recent = new Map<string, number>();
  return (user, device, remaining) => {
    const key = `${user}\u0000${device}`;
    const t = now();
    const last = recent.get(key);
    if (last !== undefined && t - last < minInterval) {
      lowPushes.inc({ result: 'suppressed' });
      return;
    }
    recent.delete(key);
    recent.set(key, t);
    if (recent.size > RECENT_CAPACITY) recent.delete(recent.keys().next().value!);
    d.sessions.list(user).then(
      (entries) => {
        const entry = entries.find((e) => e.device === device);
        const conn = entry === undefined ? null : parseRegistryConn(entry);
        if (entry === undefined || conn === null) {
          lowPushes.inc({ result: 'offline' });
          return;
        }
        d.push({ node: entry.node, shard: conn.shard, connId: conn.connId, user, device }, { t: 'keys.low', remaining, threshold: d.threshold });
        lowPushes.inc({ result: 'pushed' });
      },
      (err: unknown) => {
        lowPushes.inc({ result: 'error' });
        d.log.warn({ err }, 'session lookup for a keys.low frame failed (the device sees low: true on its next /keys request)');
      },
    );
  };
}
