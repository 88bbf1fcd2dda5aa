/**
 * Argument checks for the embedded engine. Anything that would break a key (a NUL character, a key
 * over lmdb's size limit) or a record invariant is refused with `store.invalid` before a transaction
 * starts, so no transaction ever fails half-way on bad input.
 */
import { StoreError } from '../errors.js';
import {
  CONVERSATION_KINDS,
  DEVICE_PLATFORMS,
  PUSH_PROVIDERS,
  ROLES,
  type ConversationKind,
  type CursorUpdate,
  type DevicePlatform,
  type MessageDraft,
  type PushProvider,
  type Role,
} from '../types.js';

/**
 * Longest id in UTF-8 bytes. The widest key holds three ids (idempotency: conversation, device,
 * client message id) plus a timestamp, which must stay under lmdb's 1978-byte key limit.
 */
export const MAX_ID_BYTES = 512;

function invalid(message: string): StoreError {
  return new StoreError('store.invalid', message);
}

export function checkId(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${name} must be a non-empty string`);
  // lmdb's ordered-binary keys cannot hold NUL characters.
  if (value.includes('\u0000')) throw invalid(`${name} must not contain NUL characters`);
  if (Buffer.byteLength(value, 'utf8') > MAX_ID_BYTES) throw invalid(`${name} is longer than ${MAX_ID_BYTES} bytes`);
  return value;
}

export function checkSeq(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** A seq bound that may also be +Infinity ("from the newest"). */
export function checkSeqBound(name: string, value: unknown): number {
  if (value === Number.POSITIVE_INFINITY) return value;
  return checkSeq(name, value);
}

export function checkLimit(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function checkTime(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(`${name} must be a finite number`);
  return value;
}

function checkOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) throw invalid(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return value as T;
}

export const checkKind = (v: unknown): ConversationKind => checkOneOf('kind', v, CONVERSATION_KINDS);
export const checkRole = (v: unknown): Role => checkOneOf('role', v, ROLES);
export const checkPlatform = (v: unknown): DevicePlatform => checkOneOf('platform', v, DEVICE_PLATFORMS);
export const checkProvider = (v: unknown): PushProvider | null => (v === null ? null : checkOneOf('pushProvider', v, PUSH_PROVIDERS));

export function checkMeta(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('meta must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`meta.${k} must be a string`);
    out[k] = v;
  }
  return out;
}

export function checkDrafts(drafts: unknown): MessageDraft[] {
  if (!Array.isArray(drafts) || drafts.length === 0) throw invalid('append needs a non-empty batch of drafts');
  for (const d of drafts as MessageDraft[]) {
    if (typeof d !== 'object' || d === null) throw invalid('each draft must be an object');
    checkId('messageId', d.messageId);
    checkId('senderUser', d.senderUser);
    checkId('senderDevice', d.senderDevice);
    checkId('clientMsgId', d.clientMsgId);
    if (!(d.body instanceof Uint8Array)) throw invalid('draft body must be a Uint8Array');
    checkTime('sentAtMs', d.sentAtMs);
    checkMedia(d.media);
  }
  return drafts as MessageDraft[];
}

/** Most media ids one message may carry at the store level (the protocol allows fewer). */
export const MAX_MEDIA_PER_MESSAGE = 256;

/** A draft's optional media ids: an array of ids (non-empty strings within MAX_ID_BYTES). */
export function checkMedia(media: unknown): void {
  if (media === undefined) return;
  if (!Array.isArray(media) || media.length > MAX_MEDIA_PER_MESSAGE) throw invalid(`media must be an array of at most ${MAX_MEDIA_PER_MESSAGE} ids`);
  media.forEach((id, i) => checkId(`media[${i}]`, id));
}

export function checkCursorUpdates(updates: unknown): CursorUpdate[] {
  if (!Array.isArray(updates)) throw invalid('cursor updates must be an array');
  for (const u of updates as CursorUpdate[]) {
    if (typeof u !== 'object' || u === null) throw invalid('each cursor update must be an object');
    checkId('userId', u.userId);
    checkId('deviceId', u.deviceId);
    checkId('conversationId', u.conversationId);
    checkSeq('seq', u.seq);
  }
  return updates as CursorUpdate[];
}
