import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { authenticate, bearerToken, Exchange, HttpError, parseJson, readBody, type HttpResponse } from '../gateway/rest.js';
import { isTicksError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Store } from '../store/store.js';
import type { PushProvider } from '../store/types.js';
import { pushMetrics } from './push/metrics.js';
import { checkPushToken, MAX_PUSH_TOKEN_BYTES } from './push/tokens.js';

/**
 * Push token registration (documented in docs/HTTP.md and docs/PUSH.md). The caller is the device
 * of the JWT in `Authorization: Bearer <token>` (the same token as the WebSocket upgrade):
 *
 * - `PUT /push-token` with `{"provider": "...", "token": "..."}`: checked by `checkPushToken`, then
 *   stored on the device (a device that never connected is registered first). 204.
 * - `DELETE /push-token`: removes the device's token (204, also when it had none).
 *
 * 400 `push.invalid` for a body that is not a JSON object with a valid provider and token, 401 for a
 * bad token, 413 for a body over the limit, 503 `push.disabled` when push is off on this node, 503
 * with Retry-After when the store cannot be reached.
 */
export interface PushTokenHttpDeps {
  store: Pick<Store, 'setPushToken' | 'putDevice'>;
  verify: TokenVerifier;
  /** `push.enabled`: when false every request is answered 503. */
  enabled: boolean;
  log: Logger;
  now?: () => number;
}

/** JSON overhead around the longest token. */
const MAX_BODY_BYTES = MAX_PUSH_TOKEN_BYTES * 2 + 256;

export function mountPushToken(app: TemplatedApp, d: PushTokenHttpDeps): void {
  const now = d.now ?? Date.now;

  const handle = (method: 'put' | 'delete', res: HttpResponse, work: (ex: Exchange) => Promise<void>): void => {
    const ex = new Exchange(res);
    const answer = (status: number, err?: HttpError): void => {
      pushMetrics.tokenRequests.inc({ method, status: String(status) });
      if (err === undefined) {
        if (!ex.open) return;
        ex.done = true;
        ex.res.cork(() => ex.res.writeStatus('204 No Content').end());
      } else {
        ex.error(err, err.code === 'http.body_too_large');
      }
    };
    if (!d.enabled) {
      // The body (if any) is not read: close the connection with the answer.
      pushMetrics.tokenRequests.inc({ method, status: '503' });
      ex.error(new HttpError(503, 'push.disabled', 'push notifications are disabled on this server (push.enabled)'), method === 'put');
      return;
    }
    work(ex).then(
      () => answer(204),
      (err: unknown) => {
        const e = toHttpError(err);
        if (e.status >= 500) d.log.warn({ err, method }, 'push token request failed');
        answer(e.status, e);
      },
    );
  };

  app.put('/push-token', (res, req) => {
    const token = bearerToken(req);
    handle('put', res, async (ex) => {
      const body = readBody(ex, MAX_BODY_BYTES);
      const who = await authenticate(d.verify, token);
      const { provider, token: pushToken } = parseBody(parseJson(await body));
      try {
        await d.store.setPushToken(who.user, who.device, provider, pushToken);
      } catch (err) {
        if (!(isTicksError(err) && err.code === 'store.not_found')) throw err;
        // The device registers over HTTP before its first WebSocket connection.
        await d.store.putDevice({ userId: who.user, deviceId: who.device, platform: 'other', createdAtMs: now() });
        await d.store.setPushToken(who.user, who.device, provider, pushToken);
      }
    });
  });

  app.del('/push-token', (res, req) => {
    const token = bearerToken(req);
    handle('delete', res, async () => {
      const who = await authenticate(d.verify, token);
      try {
        await d.store.setPushToken(who.user, who.device, null, null);
      } catch (err) {
        // A device that was never registered has no token: nothing to remove.
        if (!(isTicksError(err) && err.code === 'store.not_found')) throw err;
      }
    });
  });
}

/** `{provider, token}` checked by checkPushToken; anything else is a 400 that says what is wrong. */
export function parseBody(v: unknown): { provider: PushProvider; token: string } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new HttpError(400, 'push.invalid', 'request body must be a JSON object {"provider": "...", "token": "..."}');
  }
  const { provider, token } = v as Record<string, unknown>;
  const why = checkPushToken(provider, token);
  if (why !== null) throw new HttpError(400, 'push.invalid', why);
  return { provider: provider as PushProvider, token: token as string };
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isTicksError(err)) {
    if (err.code === 'store.invalid') return new HttpError(400, 'push.invalid', err.message);
    if (err.retryable) return new HttpError(503, err.code, 'storage unavailable, retry', { 'Retry-After': '1' });
  }
  return new HttpError(500, 'internal', 'internal error');
}
