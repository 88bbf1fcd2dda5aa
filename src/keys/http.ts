import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { authenticate, bearerToken, Exchange, HttpError, param, parseJson, readBody, type HttpResponse } from '../gateway/rest.js';
import { isTicksError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { isDeviceId, isUserId } from '../protocol/ids.js';
import { MAX_KEY_BYTES, validateUpload, type DeviceKeysUpload, type KeyStore, type PreKeyBundle } from './key-store.js';
import type { FetchLimiter } from './fetch-limit.js';
import { httpRequests, lowSignals } from './metrics.js';

/**
 * HTTP endpoints of the prekey directory (documented in docs/HTTP.md). Every request carries the
 * same JWT as the WebSocket upgrade in `Authorization: Bearer <token>`. Bytes travel as base64.
 *
 * - `PUT /keys`: the caller's device publishes its identity key, signed prekey and one-time prekeys.
 * - `GET /keys`: the caller's device's one-time prekey count and the low-prekey signal.
 * - `GET /keys/:user`: a bundle for each device of `user` (consumes one one-time prekey each).
 * - `GET /keys/:user/:device`: one device's bundle.
 * The two bundle routes count against the caller's `keys.fetchPerMinute` (429 `keys.rate_limited`
 * with Retry-After beyond it).
 *
 * Low-prekey signal: whenever a device's count is below `lowThreshold` after a publish or a fetch,
 * `low: true` is in the device's own answers (PUT /keys, GET /keys), and `onLow` is called with the
 * device, so that the node can tell the device over its WebSocket (a `keys.low` frame, see
 * src/keys/low-signal.ts and docs/PROTOCOL.md); a device can also poll GET /keys.
 */
export interface KeysHttpDeps {
  keys: KeyStore;
  verify: TokenVerifier;
  lowThreshold: number;
  maxPerUpload: number;
  onLow?: (user: string, device: string, remaining: number) => void;
  /** keys.fetchPerMinute per requesting user on the bundle routes (src/keys/fetch-limit.ts). */
  fetchLimit: FetchLimiter;
  /** The configured limit, for the 429 message. */
  fetchPerMinute: number;
  log: Logger;
  now?: () => number;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function mountKeys(app: TemplatedApp, d: KeysHttpDeps): void {
  const now = d.now ?? Date.now;
  const maxBody = 1024 + d.maxPerUpload * (MAX_KEY_BYTES * 2 + 64);

  const handle = (route: string, res: HttpResponse, work: (ex: Exchange) => Promise<{ status: number; body: unknown }>): void => {
    const ex = new Exchange(res);
    work(ex).then(
      ({ status, body }) => {
        httpRequests.inc({ route, status: String(status) });
        ex.json(status, body);
      },
      (err: unknown) => {
        const e = toHttpError(err);
        if (e.status >= 500) d.log.warn({ err, route }, 'keys request failed');
        httpRequests.inc({ route, status: String(e.status) });
        ex.error(e, e.code === 'http.body_too_large');
      },
    );
  };

  const signalLow = (user: string, device: string, remaining: number): boolean => {
    if (remaining >= d.lowThreshold) return false;
    lowSignals.inc();
    d.onLow?.(user, device, remaining);
    return true;
  };

  /** Counts one bundle fetch of the caller; 429 with Retry-After beyond keys.fetchPerMinute. */
  const limited = async (who: { user: string }): Promise<void> => {
    const v = await d.fetchLimit.take(who.user);
    if (!v.ok) {
      throw new HttpError(429, 'keys.rate_limited', `more than ${d.fetchPerMinute} prekey bundle fetches in a minute; retry in ${v.retryAfterS} s`, { 'Retry-After': String(v.retryAfterS) });
    }
  };

  app.put('/keys', (res, req) => {
    const token = bearerToken(req);
    handle('put', res, async (ex) => {
      const body = readBody(ex, maxBody);
      const who = await authenticate(d.verify, token);
      const upload = parseUpload(parseJson(await body));
      validateUpload(upload, d.maxPerUpload);
      const r = await d.keys.publish(who.user, who.device, upload, now());
      return {
        status: 200,
        body: { oneTimeCount: r.oneTimeCount, identityChanged: r.identityChanged, low: signalLow(who.user, who.device, r.oneTimeCount), lowThreshold: d.lowThreshold },
      };
    });
  });

  app.get('/keys', (res, req) => {
    const token = bearerToken(req);
    handle('status', res, async () => {
      const who = await authenticate(d.verify, token);
      const count = await d.keys.countOneTime(who.user, who.device);
      return { status: 200, body: { oneTimeCount: count, low: count < d.lowThreshold, lowThreshold: d.lowThreshold } };
    });
  });

  app.get('/keys/:user', (res, req) => {
    const token = bearerToken(req);
    const user = param(req, 0);
    handle('fetch_user', res, async () => {
      await limited(await authenticate(d.verify, token));
      if (!isUserId(user)) throw new HttpError(400, 'keys.bad_user', 'invalid user id');
      const bundles = await d.keys.fetchBundles(user);
      if (bundles.length === 0) throw new HttpError(404, 'keys.not_found', `user ${user} has no published keys`);
      for (const b of bundles) signalLow(b.user, b.device, b.remaining);
      return { status: 200, body: { user, devices: bundles.map(bundleJson) } };
    });
  });

  app.get('/keys/:user/:device', (res, req) => {
    const token = bearerToken(req);
    const user = param(req, 0);
    const device = param(req, 1);
    handle('fetch_device', res, async () => {
      await limited(await authenticate(d.verify, token));
      if (!isUserId(user) || !isDeviceId(device)) throw new HttpError(400, 'keys.bad_device', 'invalid user or device id');
      const b = await d.keys.fetchBundle(user, device);
      if (!b) throw new HttpError(404, 'keys.not_found', `device ${user}/${device} has no published keys`);
      signalLow(b.user, b.device, b.remaining);
      return { status: 200, body: bundleJson(b) };
    });
  });
}

function bundleJson(b: PreKeyBundle): Record<string, unknown> {
  return {
    user: b.user,
    device: b.device,
    identityKey: b64(b.identityKey),
    signedPreKey: { keyId: b.signedPreKey.keyId, publicKey: b64(b.signedPreKey.publicKey), signature: b64(b.signedPreKey.signature) },
    oneTimePreKey: b.oneTimePreKey ? { keyId: b.oneTimePreKey.keyId, publicKey: b64(b.oneTimePreKey.publicKey) } : null,
  };
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isTicksError(err)) {
    if (err.code === 'keys.invalid') return new HttpError(400, err.code, err.message);
    if (err.code === 'keys.too_many') return new HttpError(409, err.code, err.message);
    if (err.retryable) return new HttpError(503, err.code, err.message, { 'Retry-After': '1' });
  }
  return new HttpError(500, 'internal', 'internal error');
}

/** The JSON upload into bytes; every field checked (types here, sizes in validateUpload). */
export function parseUpload(v: unknown): DeviceKeysUpload {
  const bad = (field: string, what: string): never => {
    throw new HttpError(400, 'keys.invalid', `${field} must be ${what}`);
  };
  const obj = (x: unknown, field: string): Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : bad(field, 'an object');
  const bytes = (x: unknown, field: string): Uint8Array =>
    typeof x === 'string' && x.length > 0 && x.length <= MAX_KEY_BYTES * 2 && B64.test(x) ? Buffer.from(x, 'base64') : bad(field, 'base64 bytes');
  const int = (x: unknown, field: string): number => (typeof x === 'number' && Number.isSafeInteger(x) ? x : bad(field, 'an integer'));
  const known = (o: Record<string, unknown>, keys: string[], field: string): void => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${field}.${k}`, 'absent (unknown field)');
  };
  const root = obj(v, 'body');
  known(root, ['identityKey', 'signedPreKey', 'oneTimePreKeys'], 'body');
  const spk = obj(root.signedPreKey, 'signedPreKey');
  known(spk, ['keyId', 'publicKey', 'signature'], 'signedPreKey');
  const list = root.oneTimePreKeys ?? [];
  if (!Array.isArray(list)) bad('oneTimePreKeys', 'an array');
  return {
    identityKey: bytes(root.identityKey, 'identityKey'),
    signedPreKey: { keyId: int(spk.keyId, 'signedPreKey.keyId'), publicKey: bytes(spk.publicKey, 'signedPreKey.publicKey'), signature: bytes(spk.signature, 'signedPreKey.signature') },
    oneTimePreKeys: (list as unknown[]).map((k, i) => {
      const o = obj(k, `oneTimePreKeys[${i}]`);
      known(o, ['keyId', 'publicKey'], `oneTimePreKeys[${i}]`);
      return { keyId: int(o.keyId, `oneTimePreKeys[${i}].keyId`), publicKey: bytes(o.publicKey, `oneTimePreKeys[${i}].publicKey`) };
    }),
  };
}
