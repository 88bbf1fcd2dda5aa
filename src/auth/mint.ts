import { SignJWT } from 'jose';
import { TicksError } from '../lib/errors.js';
import { isDeviceId, isUserId } from '../protocol/ids.js';
import { hs256Key, type VerifySettings } from './verify.js';

export interface MintOptions {
  secret: string;
  user: string;
  device: string;
  ttlS: number;
  settings: Pick<VerifySettings, 'issuer' | 'audience' | 'deviceClaim'>;
  /** Seconds since the epoch; injectable for tests. */
  nowS?: number;
}

/** Mints an HS256 token the node accepts: `sub` = user, the device claim, iss, aud, iat and exp. */
export async function mintHs256Token(o: MintOptions): Promise<string> {
  if (!isUserId(o.user)) throw new TicksError('auth.bad_id', `invalid user id ${JSON.stringify(o.user)}: letters, digits and _ . @ -, 1 to 64`, { retryable: false });
  if (!isDeviceId(o.device)) throw new TicksError('auth.bad_id', `invalid device id ${JSON.stringify(o.device)}: letters, digits and _ . @ -, 1 to 64`, { retryable: false });
  const now = o.nowS ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ [o.settings.deviceClaim]: o.device })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(o.user)
    .setIssuer(o.settings.issuer)
    .setAudience(o.settings.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + o.ttlS)
    .sign(hs256Key(o.secret));
}
