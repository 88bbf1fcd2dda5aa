import { Packr, Unpackr } from 'msgpackr';
import type { PresenceEvent } from './presence.js';

/**
 * Presence events on the presence bus: versioned msgpack maps with short keys (an event is tiny and
 * a typing burst sends many). Only nodes of this cluster publish on these channels, but the decoder
 * still checks every field and drops anything else, so a bad publisher cannot hand a listener a
 * malformed event.
 *
 *   { v: 1, t: 'p', u: user, o: online, s: lastSeenMs }
 *   { v: 1, t: 't', c: conv, u: user, d: device, y: 1 (typing) | 0 (paused) }
 */
const VERSION = 1;

const packr = new Packr({ useRecords: false, moreTypes: false, structuredClone: false });
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  int64AsType: 'number',
});

export function encodeEvent(e: PresenceEvent): Uint8Array {
  return e.type === 'presence'
    ? packr.pack({ v: VERSION, t: 'p', u: e.user, o: e.online, s: e.lastSeenMs })
    : packr.pack({ v: VERSION, t: 't', c: e.conv, u: e.user, d: e.device, y: e.state === 'typing' ? 1 : 0 });
}

/** The event, or undefined for bytes that are not a valid version-1 event. */
export function decodeEvent(bytes: Uint8Array): PresenceEvent | undefined {
  let raw: unknown;
  try {
    raw = unpackr.unpack(bytes);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const m = raw as Record<string, unknown>;
  if (m['v'] !== VERSION || !isId(m['u'])) return undefined;
  if (m['t'] === 'p') {
    const s = m['s'];
    if (typeof m['o'] !== 'boolean' || !Number.isSafeInteger(s) || (s as number) < 0) return undefined;
    return { type: 'presence', user: m['u'], online: m['o'], lastSeenMs: s as number };
  }
  if (m['t'] === 't') {
    if (!isId(m['c']) || !isId(m['d']) || (m['y'] !== 0 && m['y'] !== 1)) return undefined;
    return { type: 'typing', conv: m['c'], user: m['u'], device: m['d'], state: m['y'] === 1 ? 'typing' : 'paused' };
  }
  return undefined;
}

export const MAX_ID_LENGTH = 256;

/** Users, conversations, devices and connection ids: non-empty strings of bounded length. */
export function isId(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH;
}
