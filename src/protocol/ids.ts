/**
 * Identifiers on the wire: user, device, conversation and message ids. Pure code shared by the server
 * and the client SDK (browsers included), so randomness comes from `globalThis.crypto`, never from
 * `node:crypto`.
 */

/** User ids: ASCII letters, digits and `_ . @ -`, 1 to 64 characters. No `:`, so `:` can separate them. */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;
/** Device ids use the same alphabet as user ids. */
export const DEVICE_ID_PATTERN = USER_ID_PATTERN;
/**
 * Conversation ids: ASCII letters, digits and `_ . @ - :`, 1 to 140 characters (long enough for a
 * direct id of two 64-character user ids). Ids starting with `d:` are reserved for direct
 * conversations and must be the canonical `directConversationId` of two user ids; every other id is
 * assigned by the server when a group or channel is created.
 */
export const CONVERSATION_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,140}$/;

const DIRECT_PREFIX = 'd:';
const DIRECT_SEPARATOR = ':';

export function isUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value);
}

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID_PATTERN.test(value);
}

export function isConversationId(value: unknown): value is string {
  if (typeof value !== 'string' || !CONVERSATION_ID_PATTERN.test(value)) return false;
  return !value.startsWith(DIRECT_PREFIX) || parseDirectConversationId(value) !== null;
}

/**
 * The id of the 1:1 conversation between two users: `d:<lower>:<higher>`, the two ids in code-unit
 * order, so both users compute the same id. A user may talk to themself (`d:alice:alice`). Throws a
 * RangeError on an invalid user id: callers validate input first.
 */
export function directConversationId(userA: string, userB: string): string {
  if (!isUserId(userA)) throw new RangeError(`invalid user id: ${JSON.stringify(userA)}`);
  if (!isUserId(userB)) throw new RangeError(`invalid user id: ${JSON.stringify(userB)}`);
  return userA <= userB
    ? DIRECT_PREFIX + userA + DIRECT_SEPARATOR + userB
    : DIRECT_PREFIX + userB + DIRECT_SEPARATOR + userA;
}

/** The two users of a direct conversation id, or null when it is not a canonical direct id. */
export function parseDirectConversationId(id: string): [string, string] | null {
  if (!id.startsWith(DIRECT_PREFIX)) return null;
  const parts = id.slice(DIRECT_PREFIX.length).split(DIRECT_SEPARATOR);
  if (parts.length !== 2) return null;
  const [a, b] = parts as [string, string];
  if (!isUserId(a) || !isUserId(b) || a > b) return null;
  return [a, b];
}

/**
 * Group and channel ids are derived from the creating request, so a retried `conv.create` (same
 * user, kind and cmid) names the same conversation: `g:` (group) or `c:` (channel) then 26 Crockford
 * base32 characters of the first 130 bits of SHA-256(user NUL kind NUL cmid). The digest is the
 * caller's (node:crypto on the server, crypto.subtle in a browser): this module stays synchronous.
 */
export const GROUP_ID_PATTERN = /^[gc]:[0-9A-HJKMNP-TV-Z]{26}$/;

/** The bytes hashed for a derived id (UTF-8 of `user \0 kind \0 cmid`). */
export function derivedIdInput(user: string, kind: 'group' | 'channel', cmid: string): Uint8Array {
  return new TextEncoder().encode(`${user}\u0000${kind}\u0000${cmid}`);
}

/** The conversation id of a group or channel from the SHA-256 `digest` of derivedIdInput. */
export function derivedConversationId(kind: 'group' | 'channel', digest: Uint8Array): string {
  if (digest.length < 17) throw new RangeError('digest too short');
  let out = kind === 'group' ? 'g:' : 'c:';
  for (let i = 0; i < 26; i++) {
    let v = 0;
    for (let b = 0; b < 5; b++) {
      const bit = i * 5 + b;
      v = (v << 1) | ((digest[bit >> 3]! >> (7 - (bit & 7))) & 1);
    }
    out += ALPHABET[v]!;
  }
  return out;
}

/** Media ids (src/media): the SHA-256 of the content in lower-case hex. */
export const MEDIA_ID_PATTERN = /^[0-9a-f]{64}$/;

export function isMediaId(value: unknown): value is string {
  return typeof value === 'string' && MEDIA_ID_PATTERN.test(value);
}

// ---- message ids -------------------------------------------------------------------------------
//
// A message id is 26 characters of Crockford base32 (0-9 and A-Z without I L O U): 10 characters of
// the 48-bit creation time in milliseconds since the Unix epoch, then 16 characters of 80 random
// bits. The alphabet is in ASCII order, so ids compare as strings in creation-time order (to the
// millisecond across processes). Ids from one generator (one per thread) are strictly increasing:
// a second id in the same millisecond, or after the clock stepped back, reuses the previous time and
// adds one to the previous random part. 80 random bits make collisions between generators negligible
// (about 2^-41 for a million ids in one millisecond).

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const TIME_CHARS = 10;
const RANDOM_BYTES = 10;
const MAX_TIME_MS = 2 ** 48 - 1;
/** 26 Crockford base32 characters; the first is at most 7 because the time has 48 bits, not 50. */
export const MESSAGE_ID_PATTERN = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

// Random bytes are fetched in blocks: one getRandomValues call per id would cost more than the rest.
const randomPool = new Uint8Array(RANDOM_BYTES * 256);
let randomPoolPos = randomPool.length;

function fillRandom(target: Uint8Array): void {
  if (randomPoolPos + RANDOM_BYTES > randomPool.length) {
    globalThis.crypto.getRandomValues(randomPool);
    randomPoolPos = 0;
  }
  target.set(randomPool.subarray(randomPoolPos, randomPoolPos + RANDOM_BYTES));
  randomPoolPos += RANDOM_BYTES;
}

/** Adds one to a big-endian byte string; false when it wrapped around to zero. */
function increment(bytes: Uint8Array): boolean {
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] !== 0xff) {
      bytes[i] = bytes[i]! + 1;
      return true;
    }
    bytes[i] = 0;
  }
  return false;
}

/** Encodes `count` base32 characters of a non-negative integer below 2^53. */
function encodeBase32(value: number, count: number): string {
  let out = '';
  for (let i = 0; i < count; i++) {
    out = ALPHABET[value % 32]! + out;
    value = Math.floor(value / 32);
  }
  return out;
}

/**
 * A message id generator with its own ordering state (see above). Each thread has one through
 * `newMessageId`; tests create their own to stay independent. `nowMs` is injectable for fake clocks.
 */
export function createMessageIdGenerator(): (nowMs?: number) => string {
  let lastTimeMs = -1;
  const lastRandom = new Uint8Array(RANDOM_BYTES);
  return (nowMs: number = Date.now()): string => {
    let timeMs = Math.min(Math.max(Math.floor(nowMs), 0), MAX_TIME_MS);
    if (timeMs <= lastTimeMs) {
      timeMs = lastTimeMs;
      if (!increment(lastRandom)) {
        // 2^80 ids in one millisecond cannot happen; move on to the next millisecond to stay ordered.
        timeMs = Math.min(lastTimeMs + 1, MAX_TIME_MS);
        fillRandom(lastRandom);
      }
    } else {
      fillRandom(lastRandom);
    }
    lastTimeMs = timeMs;
    const r = lastRandom;
    // Two 40-bit halves: each fits exactly in a double, and 40 bits are 8 base32 characters.
    const high = r[0]! * 2 ** 32 + (((r[1]! << 24) | (r[2]! << 16) | (r[3]! << 8) | r[4]!) >>> 0);
    const low = r[5]! * 2 ** 32 + (((r[6]! << 24) | (r[7]! << 16) | (r[8]! << 8) | r[9]!) >>> 0);
    return encodeBase32(timeMs, TIME_CHARS) + encodeBase32(high, 8) + encodeBase32(low, 8);
  };
}

/** A new message id from this thread's generator. */
export const newMessageId: (nowMs?: number) => string = createMessageIdGenerator();

export function isMessageId(value: unknown): value is string {
  return typeof value === 'string' && MESSAGE_ID_PATTERN.test(value);
}

/** The creation time (ms since the epoch) encoded in a message id, or null when it is not one. */
export function messageIdTimeMs(id: string): number | null {
  if (!isMessageId(id)) return null;
  let time = 0;
  for (let i = 0; i < TIME_CHARS; i++) time = time * 32 + ALPHABET.indexOf(id[i]!);
  return time;
}
