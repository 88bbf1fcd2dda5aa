import { decodeProtectedHeader } from 'jose';
import { hs256Key, INVALID, MAX_TOKEN_CHARS, MISSING, verifyJwt, type VerifyOutcome, type VerifySettings } from './verify.js';

/**
 * The verifier a shard thread uses at upgrade time. It reads the (unverified) header to route:
 *
 * - HS256 verifies inline on the shard: an HMAC over a few hundred bytes costs a few microseconds,
 *   less than a round trip to the main thread, so offloading it would only add latency.
 * - EdDSA and ES256 go to `remote` (the main thread's piscina pool, src/auth/verify-pool.ts):
 *   signature checks cost tens of microseconds each, and a reconnect storm of them would stall
 *   the shard's sockets.
 * - Any other `alg` (including `none`), or an algorithm not in the allow-list, is invalid without
 *   further work. The header only routes; jose re-checks the algorithm against the allow-list.
 */
export type TokenVerifier = (token: string | undefined) => Promise<VerifyOutcome>;

export interface TokenVerifierOptions {
  settings: VerifySettings;
  /** Secret for HS256; without it HS256 tokens are invalid. */
  hs256Secret?: string | undefined;
  /** Verifies a public-key token elsewhere; without it EdDSA/ES256 tokens are invalid. */
  remote?: ((token: string) => Promise<VerifyOutcome>) | undefined;
}

export function createTokenVerifier(opts: TokenVerifierOptions): TokenVerifier {
  const { settings } = opts;
  const hsKeys = opts.hs256Secret === undefined ? [] : [hs256Key(opts.hs256Secret)];
  return async (token) => {
    if (token === undefined || token === '') return MISSING;
    if (token.length > MAX_TOKEN_CHARS) return INVALID;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      return INVALID;
    }
    if (alg === 'HS256' && settings.algorithms.includes('HS256')) return verifyJwt(token, 'HS256', hsKeys, settings);
    if ((alg === 'EdDSA' || alg === 'ES256') && settings.algorithms.includes(alg) && opts.remote) return opts.remote(token);
    return INVALID;
  };
}
