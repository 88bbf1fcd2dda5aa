import { StoreError } from '../errors.js';
import { DEVICE_PLATFORMS, PUSH_PROVIDERS, type Device, type DevicePlatform, type PushProvider } from '../types.js';
import type { Session } from './session.js';
import { invalid, ms, requireId, requireMs, str } from './values.js';

/** Devices and push tokens, one partition per user. */
export class Devices {
  constructor(private readonly s: Session) {}

  /** A plain INSERT sets platform and created_at only, so an existing push token stays. */
  async put(device: Omit<Device, 'pushProvider' | 'pushToken'>): Promise<void> {
    requireId('userId', device.userId);
    requireId('deviceId', device.deviceId);
    if (!DEVICE_PLATFORMS.includes(device.platform)) throw invalid(`platform must be one of ${DEVICE_PLATFORMS.join(', ')}`);
    requireMs('createdAtMs', device.createdAtMs);
    await this.s.write(this.s.cql.upsertDevice, [device.userId, device.deviceId, device.platform, new Date(device.createdAtMs)]);
  }

  /** `IF EXISTS`, so a token set racing removeDevice cannot resurrect a half row. Clearing clears both. */
  async setPushToken(userId: string, deviceId: string, provider: PushProvider | null, token: string | null): Promise<void> {
    requireId('userId', userId);
    requireId('deviceId', deviceId);
    if (token !== null && (typeof token !== 'string' || token.length === 0)) throw invalid('token must be a non-empty string or null');
    if (token !== null && !PUSH_PROVIDERS.includes(provider as PushProvider)) {
      throw invalid(`provider must be one of ${PUSH_PROVIDERS.join(', ')}`);
    }
    const rs = await this.s.lwt(this.s.cql.setPushToken, [token === null ? null : provider, token, userId, deviceId]);
    if (!rs.wasApplied()) throw new StoreError('store.not_found', `device ${userId}/${deviceId} is not registered`);
  }

  async list(userId: string): Promise<Device[]> {
    requireId('userId', userId);
    const rows = await this.s.read(this.s.cql.listDevices, [userId]);
    return rows.map((r) => ({
      userId: str(r.get('user_id')),
      deviceId: str(r.get('device_id')),
      platform: str(r.get('platform')) as DevicePlatform,
      pushProvider: (r.get('push_provider') ?? null) as PushProvider | null,
      pushToken: (r.get('push_token') ?? null) as string | null,
      createdAtMs: ms(r.get('created_at')),
    }));
  }

  /** The device's delivered cursors stay (monotonic cells are never deleted, see cql.ts). */
  async remove(userId: string, deviceId: string): Promise<void> {
    requireId('userId', userId);
    requireId('deviceId', deviceId);
    await this.s.write(this.s.cql.deleteDevice, [userId, deviceId]);
  }
}
