import { Counter } from 'prom-client';
import type { TemplatedApp } from 'uWebSockets.js';
import type { SessionRef } from './actors/session.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import type { DeviceTombstones } from './auth/tombstones.js';
import { parseRegistryConn } from './cluster/thread-sessions.js';
import type { SessionRegistry } from './cluster/sessions/sessions.js';
import { authenticate, bearerToken, Exchange, HttpError, param } from './gateway/rest.js';
import type { KeyStore } from './keys/key-store.js';
import { isTicksError } from './lib/errors.js';
import type { Logger } from './lib/log.js';
import { registry } from './metrics/registry.js';
import { CLOSE, CLOSE_REASONS } from './protocol/codes.js';
import { isDeviceId } from './protocol/ids.js';
import type { Store } from './store/store.js';

const requests = new Counter({
  name: 'ticks_devices_remove_requests_total',
  help: 'DELETE /devices/:device requests by status code.',
  labelNames: ['status'] as const,
  registers: [registry],
});

const closedSessions = new Counter({
  name: 'ticks_devices_removed_sessions_total',
  help: 'Live sessions closed with 4507 because their device was removed, by where the session was: this node (any shard) or another node.',
  labelNames: ['node'] as const,
  registers: [registry],
});
for (const node of ['this', 'other'] as const) closedSessions.inc({ node }, 0);

/**
 * `DELETE /devices/:device` (Bearer token; documented in docs/HTTP.md): the caller removes one of
 * its own user's devices (itself, or another device it no longer has, e.g. a lost phone):
 *
 * 1. the tombstone (src/auth/tombstones.ts): from then on, tokens of the device issued before now are
 *    refused (WebSocket close 4507, HTTP 401 `auth.removed`). First, so that nothing below can be
 *    undone by the device reconnecting meanwhile;
 * 2. the device's prekeys (nobody starts new end-to-end sessions with it);
 * 3. the device record with its push token (no more pushes to it);
 * 4. its live session, wherever it is: the session registry (memory on the node's main thread in
 *    embedded mode, Redis in cluster mode) names the node and `<shard>:<connId>`, and the actors'
 *    router closes it with 4507 on this shard, over the ShardLink on another shard, or over the bus
 *    on another node.
 *
 * 204, also when there was nothing to remove (idempotent); 400 for a malformed device id, 401 for a
 * bad token, 503 with Retry-After when a store or the registry is unreachable (a retry finishes the
 * removal; it moves the tombstone to the retry's time).
 *
 * Known gap: a connection whose token was verified before step 1 and that reaches the registry only
 * after step 4's lookup (a window of a few milliseconds) stays open; it is closed at the latest when
 * its token expires, and it cannot reconnect.
 */
export interface DevicesHttpDeps {
  store: Pick<Store, 'removeDevice'>;
  /** Null when the prekey directory is disabled. */
  keys: Pick<KeyStore, 'removeDevice'> | null;
  tombstones: Pick<DeviceTombstones, 'put'>;
  /** Closes the device's live sessions (see closeDeviceSessions); resolves when the closes are sent. */
  closeSessions: (user: string, device: string) => Promise<void>;
  verify: TokenVerifier;
  log: Logger;
  now?: () => number;
}

export function mountDevices(app: TemplatedApp, d: DevicesHttpDeps): void {
  const now = d.now ?? Date.now;
  app.del('/devices/:device', (res, req) => {
    const token = bearerToken(req);
    const device = param(req, 0);
    const ex = new Exchange(res);
    void (async () => {
      const who = await authenticate(d.verify, token);
      if (!isDeviceId(device)) throw new HttpError(400, 'devices.bad_device', 'invalid device id');
      await d.tombstones.put(who.user, device, now());
      // Keys before the record: a device record without keys is harmless, keys of a removed device are not.
      await d.keys?.removeDevice(who.user, device);
      await d.store.removeDevice(who.user, device);
      await d.closeSessions(who.user, device);
    })().then(
      () => {
        requests.inc({ status: '204' });
        if (!ex.open) return;
        ex.done = true;
        ex.res.cork(() => ex.res.writeStatus('204 No Content').end());
      },
      (err: unknown) => {
        const e = toHttpError(err);
        if (e.status >= 500) d.log.warn({ err }, 'device removal failed');
        requests.inc({ status: String(e.status) });
        ex.error(e);
      },
    );
  });
}

/**
 * Closes every live session the registry lists for (user, device) with 4507 through `close` (the
 * actors' router: this shard, another shard of this node, or another node over the bus). Rejects
 * with the registry's error (retryable ClusterError) when it cannot be read.
 */
export async function closeDeviceSessions(
  o: { nodeId: string; sessions: Pick<SessionRegistry, 'list'>; close: (ref: SessionRef, code: number, reason: string) => void },
  user: string,
  device: string,
): Promise<void> {
  for (const e of await o.sessions.list(user)) {
    if (e.device !== device) continue;
    const conn = parseRegistryConn(e);
    if (conn === null) continue;
    o.close({ node: e.node, shard: conn.shard, connId: conn.connId, user, device }, CLOSE.deviceRemoved, CLOSE_REASONS[CLOSE.deviceRemoved]);
    closedSessions.inc({ node: e.node === o.nodeId ? 'this' : 'other' });
  }
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isTicksError(err) && err.retryable) return new HttpError(503, err.code, 'storage unavailable, retry', { 'Retry-After': '1' });
  return new HttpError(500, 'internal', 'internal error');
}
