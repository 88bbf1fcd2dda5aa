import { createPublicKey, type KeyObject } from 'node:crypto';
import { errors, jwtVerify, type JWTPayload } from 'jose';
import type { AuthConfig } from '../config/schema.js';
import { TicksError } from '../lib/errors.js';
import { isDeviceId, isUserId } from '../protocol/ids.js';

/**
 * JWT verification core, shared by the inline HS256 path on shard threads and the piscina task that
 * verifies public-key tokens (src/auth/verify-task.ts). Pure apart from the crypto: no I/O.
 *
 * jose's `jwtVerify` alone accepts a token without `exp` and with any `aud` (see NOTES.md), so every
 * call passes the algorithm allow-list, issuer, audience and `requiredClaims: ['exp', 'sub']`; the
 * lifetime bound (iat present and not in the future, exp - iat <= auth.maxTokenLifetimeS) is checked
 * here after jose, since jose's own `maxTokenAge` bounds the age at verification, not exp - iat.
 */

/** Expected outcomes are data: a bad token is a result, not an exception. */
export type VerifyOutcome =
  | {
      ok: true;
      user: string;
      device: string;
      /** `exp` claim, seconds since the epoch. */
      exp: number;
      /** `iat` claim, seconds since the epoch, when present (compared with device removals). */
      iat?: number;
    }
  /**
   * `removed`: a valid token of a device removed after it was issued (src/auth/tombstones.ts).
   * `lifetime`: a correctly signed token without `iat`, with `iat` in the future, or whose `exp - iat`
   * exceeds auth.maxTokenLifetimeS.
   */
  | { ok: false; reason: 'expired' | 'invalid' | 'missing' | 'removed' | 'lifetime' };

export type JwtAlgorithm = AuthConfig['algorithms'][number];
export type PublicKeyAlgorithm = Exclude<JwtAlgorithm, 'HS256'>;

/** The part of the auth config that verification needs; structured-cloneable (sent to piscina). */
export type VerifySettings = Pick<AuthConfig, 'algorithms' | 'issuer' | 'audience' | 'deviceClaim' | 'clockToleranceS' | 'maxTokenLifetimeS'>;

/** Tokens longer than this are rejected unparsed: no legitimate token comes near it. */
export const MAX_TOKEN_CHARS = 8192;

export const INVALID: VerifyOutcome = Object.freeze({ ok: false, reason: 'invalid' });
export const EXPIRED: VerifyOutcome = Object.freeze({ ok: false, reason: 'expired' });
export const MISSING: VerifyOutcome = Object.freeze({ ok: false, reason: 'missing' });
export const REMOVED: VerifyOutcome = Object.freeze({ ok: false, reason: 'removed' });
export const LIFETIME: VerifyOutcome = Object.freeze({ ok: false, reason: 'lifetime' });
/** What a client is told about a `lifetime` refusal (WebSocket error frame, HTTP 401 message). */
export const LIFETIME_MESSAGE = 'token lifetime out of bounds: iat is required, not in the future, and exp - iat at most auth.maxTokenLifetimeS';

export function settingsOf(auth: AuthConfig): VerifySettings {
  return {
    algorithms: [...auth.algorithms],
    issuer: auth.issuer,
    audience: auth.audience,
    deviceClaim: auth.deviceClaim,
    clockToleranceS: auth.clockToleranceS,
    maxTokenLifetimeS: auth.maxTokenLifetimeS,
  };
}

export function hs256Key(secret: string): Uint8Array {
  return new TextEncoder().encode(secret);
}

export type PublicKeySet = Record<PublicKeyAlgorithm, KeyObject[]>;

/**
 * Parses `auth.publicKeys` (PEM SPKI) and files each key under the one algorithm it can verify:
 * Ed25519 → EdDSA, EC P-256 → ES256. Any other key, or a key whose algorithm is not in the
 * allow-list, stops the node at start with a message naming the key.
 */
export function loadPublicKeys(pems: readonly string[], algorithms: readonly JwtAlgorithm[]): PublicKeySet {
  const out: PublicKeySet = { EdDSA: [], ES256: [] };
  pems.forEach((pem, i) => {
    const where = `auth.publicKeys[${i}]`;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: pem, format: 'pem' });
    } catch (err) {
      throw new TicksError('auth.bad_key', `${where} is not a PEM public key: ${(err as Error).message}`, { retryable: false, cause: err });
    }
    const type = key.asymmetricKeyType;
    const alg: PublicKeyAlgorithm | null =
      type === 'ed25519' ? 'EdDSA' : type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ES256' : null;
    if (alg === null) {
      throw new TicksError('auth.bad_key', `${where} is a ${type ?? 'unknown'} key; only Ed25519 (EdDSA) and P-256 (ES256) are supported`, { retryable: false });
    }
    if (!algorithms.includes(alg)) {
      throw new TicksError('auth.bad_key', `${where} is an ${alg} key but ${alg} is not in auth.algorithms`, { retryable: false });
    }
    out[alg].push(key);
  });
  return out;
}

/**
 * The bound on token lifetime: `iat` present, not later than now (within the clock tolerance), and
 * `exp - iat` at most `maxTokenLifetimeS`. So no accepted token outlives its issue time by more than
 * the bound plus the tolerance, which is what lets device tombstones expire (src/auth/tombstones.ts).
 */
export function withinLifetime(iatS: number | undefined, expS: number, s: Pick<VerifySettings, 'clockToleranceS' | 'maxTokenLifetimeS'>, nowS: number): boolean {
  return iatS !== undefined && iatS <= nowS + s.clockToleranceS && expS - iatS <= s.maxTokenLifetimeS;
}

function outcomeOf(payload: JWTPayload, s: VerifySettings): VerifyOutcome {
  const device = payload[s.deviceClaim];
  if (!isUserId(payload.sub) || !isDeviceId(device) || typeof payload.exp !== 'number') return INVALID;
  // jose has checked that iat, when present, is a number.
  const iat = typeof payload.iat === 'number' ? payload.iat : undefined;
  if (!withinLifetime(iat, payload.exp, s, Date.now() / 1000)) return LIFETIME;
  const out: Extract<VerifyOutcome, { ok: true }> = { ok: true, user: payload.sub, device, exp: payload.exp };
  if (iat !== undefined) out.iat = iat;
  return out;
}

/**
 * Verifies `token` against each candidate key of one algorithm. A signature mismatch tries the next
 * key; any other failure is final (the signature matched, the claims did not).
 */
export async function verifyJwt(
  token: string,
  alg: JwtAlgorithm,
  keys: readonly (KeyObject | Uint8Array)[],
  s: VerifySettings,
): Promise<VerifyOutcome> {
  if (token.length > MAX_TOKEN_CHARS || !s.algorithms.includes(alg)) return INVALID;
  for (const key of keys) {
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: [alg],
        issuer: s.issuer,
        audience: s.audience,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: s.clockToleranceS,
      });
      return outcomeOf(payload, s);
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed) continue;
      if (err instanceof errors.JWTExpired) return EXPIRED;
      if (err instanceof errors.JOSEError || err instanceof TypeError) return INVALID;
      throw err;
    }
  }
  return INVALID;
}
