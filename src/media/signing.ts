import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, expiring download URLs: `/media/<id>?u=<user>&exp=<unix seconds>&sig=<base64url HMAC>`.
 * The HMAC-SHA256 covers a version tag, the media id, the user it was issued to and the expiry, so a
 * URL cannot be re-pointed at another blob, extended, or re-attributed. Every node of a cluster must
 * share the secret (media.urlSecret, or one derived from the shared HS256 secret).
 */
const VERSION = 'ticks-media-url-v1';

export function urlSecretFrom(configured: string | undefined, hs256Secret: string | undefined): Buffer | undefined {
  if (configured !== undefined) return Buffer.from(configured, 'utf8');
  if (hs256Secret === undefined) return undefined;
  // A separate key from the token secret: a URL signature can never be confused with a token MAC.
  return createHmac('sha256', hs256Secret).update('ticks media url secret v1').digest();
}

function mac(secret: Buffer, id: string, user: string, exp: number): Buffer {
  return createHmac('sha256', secret).update(`${VERSION}\n${id}\n${user}\n${exp}`).digest();
}

export function signUrl(secret: Buffer, id: string, user: string, exp: number): string {
  const q = new URLSearchParams({ u: user, exp: String(exp), sig: mac(secret, id, user, exp).toString('base64url') });
  return `/media/${id}?${q.toString()}`;
}

export type UrlCheck = { ok: true; user: string; exp: number } | { ok: false; reason: 'bad_signature' | 'expired' };

/** Checks the query of a download URL; the signature is compared in constant time. */
export function checkUrl(secret: Buffer, id: string, q: URLSearchParams, nowS: number): UrlCheck {
  const user = q.get('u');
  const expRaw = q.get('exp');
  const sig = q.get('sig');
  if (!user || !expRaw || !sig || !/^\d{1,12}$/.test(expRaw)) return { ok: false, reason: 'bad_signature' };
  const exp = Number(expRaw);
  const given = Buffer.from(sig, 'base64url');
  const want = mac(secret, id, user, exp);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return { ok: false, reason: 'bad_signature' };
  // Checked after the signature, so an expired answer is only given for genuine URLs.
  if (exp < nowS) return { ok: false, reason: 'expired' };
  return { ok: true, user, exp };
}
