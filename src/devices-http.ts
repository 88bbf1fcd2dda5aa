import { Counter } from 'prom-client';
import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import { authenticate, bearerToken, Exchange, HttpError, param } from './gateway/rest.js';
import type { KeyStore } from './keys/key-store.js';
import { isTicksError } from './lib/errors.js';
import type { Logger } from './lib/log.js';
import { registry } from './metrics/registry.js';
import { isDeviceId } from './protocol/ids.js';
import type { Store } from './store/store.js';

const requests = new Counter({
  name: 'ticks_devices_remove_requests_total',
  help: 'DELETE /devices/:device requests by status code.',
  labelNames: ['status'] as const,
  registers: [registry],
});

/**
 * `DELETE /devices/:device` (Bearer token; documented in docs/HTTP.md): the caller removes one of
 * its own user's devices (itself, or another device it no longer has, e.g. a lost phone): the
 * device's prekeys (so nobody starts new end-to-end sessions with it), then the device record with
 * its push token (no more pushes to it). 204, also when there was nothing to remove (idempotent);
 * 400 for a malformed device id, 401 for a bad token, 503 with Retry-After when a store is
 * unreachable (nothing is half-removed for good: a retry finishes it).
 *
 * The server does not issue tokens: a removed device that connects again with a valid token is
 * registered again, so the token issuer must stop issuing tokens for it.
 */
export interface DevicesHttpDeps {
  store: Pick<Store, 'removeDevice'>;
  /** Null when the prekey directory is disabled. */
  keys: Pick<KeyStore, 'removeDevice'> | null;
  verify: TokenVerifier;
  log: Logger;
}

export function mountDevices(app: TemplatedApp, d: DevicesHttpDeps): void {
  app.del('/devices/:device', (res, req) => {
    const token = bearerToken(req);
    const device = param(req, 0);
    const ex = new Exchange(res);
    void (async () => {
      const who = await authenticate(d.verify, token);
      if (!isDeviceId(device)) throw new HttpError(400, 'devices.bad_device', 'invalid device id');
      // Keys first: a device record without keys is harmless, keys of a removed device are not.
      await d.keys?.removeDevice(who.user, device);
      await d.store.removeDevice(who.user, device);
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

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isTicksError(err) && err.retryable) return new HttpError(503, err.code, 'storage unavailable, retry', { 'Retry-After': '1' });
  return new HttpError(500, 'internal', 'internal error');
}
