import { workerData } from 'node:worker_threads';
import { decodeProtectedHeader } from 'jose';
import { INVALID, loadPublicKeys, verifyJwt, type VerifyOutcome, type VerifySettings } from './verify.js';

/**
 * piscina task file: verifies EdDSA and ES256 tokens off the shard threads, so a burst of
 * public-key verifications (about 50-100 µs of CPU each) never stalls a shard's event loop.
 * workerData: { settings: VerifySettings, publicKeys: string[] } (see src/auth/verify-pool.ts).
 */
const data = workerData as { settings: VerifySettings; publicKeys: string[] };
const keys = loadPublicKeys(data.publicKeys, data.settings.algorithms);

export default async function verifyPublicKeyToken(token: string): Promise<VerifyOutcome> {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    return INVALID;
  }
  if (alg !== 'EdDSA' && alg !== 'ES256') return INVALID;
  return verifyJwt(token, alg, keys[alg], data.settings);
}
