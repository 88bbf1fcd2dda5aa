/**
 * Receipt cursors and devices: small per-user records with no ordering across users.
 */
import { StoreError } from '../errors.js';
import type { CursorEntry, CursorUpdate, Device, PushProvider } from '../types.js';
import { hasPrefix, PREFIX_END } from './keys.js';
import type { DeviceRow } from './records.js';
import type { EngineContext } from './tables.js';

/** All updates in one transaction; each cursor keeps the highest seq it has ever seen. */
export async function advanceDelivered(ctx: EngineContext, updates: CursorUpdate[]): Promise<void> {
  if (updates.length === 0) return;
  const { delivered } = ctx.tables;
  await ctx.tables.root.childTransaction(() => {
    for (const u of updates) {
      const key = [u.userId, u.deviceId, u.conversationId];
      const current = delivered.get(key);
      if (current === undefined || u.seq > current) delivered.put(key, u.seq);
    }
  });
}

export function getDelivered(ctx: EngineContext, userId: string, deviceId: string): CursorEntry[] {
  const out: CursorEntry[] = [];
  const prefix = [userId, deviceId];
  for (const { key, value } of ctx.tables.delivered.getRange({ start: prefix, end: [...prefix, PREFIX_END] })) {
    if (hasPrefix(key, prefix)) out.push({ conversationId: key[2] as string, seq: value });
  }
  return out;
}

export async function advanceRead(ctx: EngineContext, userId: string, conversationId: string, seq: number): Promise<void> {
  const { read } = ctx.tables;
  await ctx.tables.root.childTransaction(() => {
    const key = [userId, conversationId];
    const current = read.get(key);
    if (current === undefined || seq > current) read.put(key, seq);
  });
}

export function getRead(ctx: EngineContext, userId: string): CursorEntry[] {
  const out: CursorEntry[] = [];
  for (const { key, value } of ctx.tables.read.getRange({ start: [userId], end: [userId, PREFIX_END] })) {
    if (hasPrefix(key, [userId])) out.push({ conversationId: key[1] as string, seq: value });
  }
  return out;
}

/** Upsert; an existing device keeps its push token and its original registration time. */
export async function putDevice(ctx: EngineContext, device: Omit<Device, 'pushProvider' | 'pushToken'>): Promise<void> {
  const { devices } = ctx.tables;
  await ctx.tables.root.childTransaction(() => {
    const key = [device.userId, device.deviceId];
    const existing = devices.get(key);
    const row: DeviceRow = existing
      ? { ...existing, platform: device.platform }
      : { platform: device.platform, pushProvider: null, pushToken: null, createdAtMs: device.createdAtMs };
    devices.put(key, row);
  });
}

/** A cleared token (null) clears the provider too: a provider without a token reaches nobody. */
export async function setPushToken(
  ctx: EngineContext,
  userId: string,
  deviceId: string,
  provider: PushProvider | null,
  token: string | null,
): Promise<void> {
  const { devices } = ctx.tables;
  const found = await ctx.tables.root.childTransaction(() => {
    const key = [userId, deviceId];
    const existing = devices.get(key);
    if (existing === undefined) return false;
    devices.put(key, { ...existing, pushProvider: token === null ? null : provider, pushToken: token });
    return true;
  });
  if (!found) throw new StoreError('store.not_found', `device ${deviceId} of user ${userId} is not registered`);
}

export function listDevices(ctx: EngineContext, userId: string): Device[] {
  const out: Device[] = [];
  for (const { key, value } of ctx.tables.devices.getRange({ start: [userId], end: [userId, PREFIX_END] })) {
    if (!hasPrefix(key, [userId])) continue;
    out.push({
      userId,
      deviceId: key[1] as string,
      platform: value.platform,
      pushProvider: value.pushProvider,
      pushToken: value.pushToken,
      createdAtMs: value.createdAtMs,
    });
  }
  return out;
}

/** A no-op for an unknown device. Delivered cursors are kept: a re-registered device id resumes. */
export async function removeDevice(ctx: EngineContext, userId: string, deviceId: string): Promise<void> {
  await ctx.tables.root.childTransaction(() => {
    ctx.tables.devices.remove([userId, deviceId]);
  });
}
