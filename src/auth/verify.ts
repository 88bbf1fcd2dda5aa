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
 * call passes the algorithm allow-list, issuer, audience and `requiredClaims: ['exp', 'sub']`.
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
  /** `removed`: a valid token of a device removed after it was issued (src/auth/tombstones.ts). */
  | { ok: false; reason: 'expired' | 'invalid' | 'missing' | 'removed' };

export type JwtAlgorithm = AuthConfig['algorithms'][number];
export type PublicKeyAlgorithm = Exclude<JwtAlgorithm, 'HS256'>;

/** The part of the auth config that verification needs; structured-cloneable (sent to piscina). */
export type VerifySettings = Pick<AuthConfig, 'algorithms' | 'issuer' | 'audience' | 'deviceClaim' | 'clockToleranceS'>;

/** Tokens longer than this are rejected unparsed: no legitimate token comes near it. */
export const MAX_TOKEN_CHARS = 8192;

export const INVALID: VerifyOutcome = Object.freeze({ ok: false, reason: 'invalid' });
export const EXPIRED: VerifyOutcome = Object.freeze({ ok: false, reason: 'expired' });
export const MISSING: VerifyOutcome = Object.freeze({ ok: false, reason: 'missing' });
export const REMOVED: VerifyOutcome = Object.freeze({ ok: false, reason: 'removed' });

export function settingsOf(auth: AuthConfig): VerifySettings {
  return {
    algorithms: [...auth.algorithms],
    issuer: auth.issuer,
    audience: auth.audience,
    deviceClaim: auth.deviceClaim,
    clockToleranceS: auth.clockToleranceS,
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

function outcomeOf(payload: JWTPayload, deviceClaim: string): VerifyOutcome {
  const device = payload[deviceClaim];
  if (!isUserId(payload.sub) || !isDeviceId(device) || typeof payload.exp !== 'number') return INVALID;
  const out: Extract<VerifyOutcome, { ok: true }> = { ok: true, user: payload.sub, device, exp: payload.exp };
  if (typeof payload.iat === 'number') out.iat = payload.iat;
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
      return outcomeOf(payload, s.deviceClaim);
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed) continue;
      if (err instanceof errors.JWTExpired) return EXPIRED;
      if (err instanceof errors.JOSEError || err instanceof TypeError) return INVALID;
      throw err;
    }
  }
  return INVALID;
}
