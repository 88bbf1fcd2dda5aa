import { Packr } from 'msgpackr';
import t from 'tap';
import { errorFrame, MAX_SYNC_CURSORS, type ClientFrame, type ServerFrame } from '../../src/protocol/client-frames.js';
import { MAX_PRESENCE_TARGETS } from '../../src/protocol/client-presence-frames.js';
import { CLIENT_FRAME_TYPES, SERVER_FRAME_TYPES } from '../../src/protocol/client-frame-schemas.js';
import {
  decodeClientFrame,
  decodeServerFrame,
  encodeClientFrame,
  encodeServerFrame,
  type DecodeLimits,
} from '../../src/protocol/codec.js';
import { CLOSE, CLOSE_REASONS, ERROR_CODES, isErrorCode, isReconnectable } from '../../src/protocol/codes.js';
import {
  directConversationId,
  isConversationId,
  isMessageId,
  createMessageIdGenerator,
  isUserId,
  messageIdTimeMs,
  newMessageId,
  parseDirectConversationId,
} from '../../src/protocol/ids.js';

const limits: DecodeLimits = { maxFrameBytes: 65536, maxBodyBytes: 49152 };
// Packs anything, including msgpackr's extension types (Date, RegExp, Set, Error, typed arrays).
const rich = new Packr({ moreTypes: true, structuredClone: true, useRecords: false });
const bytes = (...values: number[]) => new Uint8Array(values);

/** Bodies as plain arrays, so Buffer and Uint8Array compare by content. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function decodeRaw(value: unknown, l: DecodeLimits = limits) {
  return decodeClientFrame(rich.pack(value), l);
}

const clientFrames: ClientFrame[] = [
  { t: 'send', id: 1, to: 'bob', cmid: '6f1c2b9e-7d1a-4c55-9d0e-1f2a3b4c5d6e', body: bytes(1, 2, 3) },
  { t: 'send', id: 2, conv: 'g:team-42', cmid: 'c2', body: new Uint8Array(0) },
  { t: 'dack', conv: 'd:alice:bob', seq: 17 },
  { t: 'read', conv: 'g:team-42', seq: 0 },
  { t: 'sync', id: 3 },
  { t: 'sync', id: 4, cursors: { 'd:alice:bob': 17, 'g:team-42': 0 }, limit: 500 },
  { t: 'history', id: 5, conv: 'c:news', before: 100, limit: 50 },
  { t: 'history', id: 6, conv: 'c:news', limit: 1 },
  { t: 'ping', id: Number.MAX_SAFE_INTEGER },
  { t: 'presence.sub', id: 7, users: ['bob', 'carol'], convs: ['d:alice:bob'] },
  { t: 'presence.sub', id: 8, users: [] },
  { t: 'presence.unsub', users: ['bob'] },
  { t: 'presence.unsub', convs: ['g:team-42'] },
  { t: 'typing', conv: 'd:alice:bob', state: 'typing' },
  { t: 'typing', conv: 'g:team-42', state: 'paused' },
  { t: 'send', id: 9, conv: 'g:team-42', cmid: 'm1', body: bytes(1), media: ['a'.repeat(64), '0123456789abcdef'.repeat(4)] },
  { t: 'conv.create', id: 10, cmid: 'create-1', kind: 'group', name: 'Team', avatar: 'b'.repeat(64), members: ['bob', 'carol'] },
  { t: 'conv.create', id: 11, cmid: 'create-2', kind: 'channel' },
  { t: 'member.add', id: 12, conv: 'g:team-42', users: ['dave'], role: 'admin' },
  { t: 'member.add', id: 13, conv: 'g:team-42', users: ['erin', 'frank'] },
  { t: 'member.remove', id: 14, conv: 'g:team-42', user: 'dave' },
  { t: 'member.role', id: 15, conv: 'g:team-42', user: 'erin', role: 'owner' },
  { t: 'conv.leave', id: 16, conv: 'c:news' },
  { t: 'conv.join', id: 17, conv: 'c:news' },
  { t: 'conv.meta', id: 18, conv: 'g:team-42', name: '' },
  { t: 'conv.meta', id: 19, conv: 'g:team-42', avatar: 'c'.repeat(64) },
  { t: 'members', id: 20, conv: 'g:team-42', limit: 100 },
  { t: 'members', id: 21, conv: 'g:team-42', after: 'bob', limit: 1 },
  { t: 'receipts', id: 22, conv: 'g:team-42', seq: 7 },
];

const entry = { seq: 9, mid: '01J0000000000000000000000A', from: 'bob', fdev: 'phone', body: bytes(7, 7), ts: 1_760_000_000_123 };
const serverFrames: ServerFrame[] = [
  {
    t: 'hello', v: 1, user: 'alice', device: 'laptop', node: 'n1',
    limits: { maxFrameBytes: 65536, maxBodyBytes: 49152, framesPerSecond: 50, idleTimeoutS: 60, maxInflightRequests: 64 },
  },
  { t: 'sent', id: 1, conv: 'd:alice:bob', seq: 42, mid: entry.mid, dup: false, ts: entry.ts },
  { t: 'msg', conv: 'd:alice:bob', kind: 'direct', ...entry },
  { t: 'msg', conv: 'g:x', kind: 'group', ...entry, from: 'alice', cmid: 'c-1' },
  { t: 'receipt', conv: 'd:alice:bob', kind: 'delivered', user: 'bob', device: 'phone', seq: 42 },
  { t: 'receipt', conv: 'd:alice:bob', kind: 'read', user: 'bob', seq: 41 },
  { t: 'sync.batch', id: 3, conv: 'g:x', kind: 'group', msgs: [entry, { ...entry, seq: 10 }], head: 12 },
  { t: 'sync.batch', id: 3, conv: 'c:news', kind: 'channel', msgs: [], head: 900, expired: true, retainedFrom: 800 },
  { t: 'synced', id: 3, heads: { 'g:x': 12, 'c:news': 900 }, reads: { 'g:x': 5 }, more: false },
  {
    t: 'synced', id: 4, heads: { 'd:alice:bob': 42 }, reads: {}, more: true,
    peers: { 'd:alice:bob': { user: 'bob', delivered: 42, read: 40 } },
  },
  { t: 'history.page', id: 5, conv: 'g:x', msgs: [{ ...entry, seq: 2 }, { ...entry, seq: 1 }], next: null, expired: false },
  { t: 'history.page', id: 6, conv: 'g:x', msgs: [], next: 50, expired: true },
  { t: 'pong', id: 4 },
  { t: 'presence.state', id: 7, users: [{ user: 'bob', online: true, lastSeen: entry.ts }, { user: 'carol', online: false, lastSeen: null }] },
  { t: 'presence', user: 'bob', online: false, lastSeen: entry.ts },
  { t: 'typing.event', conv: 'd:alice:bob', user: 'bob', device: 'phone', state: 'typing' },
  { t: 'msg', conv: 'g:x', kind: 'group', ...entry, fdev: '~', body: bytes(), sys: { op: 'add', by: 'alice', users: ['bob'], role: 'admin' } },
  { t: 'msg', conv: 'g:x', kind: 'group', ...entry, media: ['a'.repeat(64)] },
  { t: 'receipt', conv: 'g:x', kind: 'read', user: '*', seq: 41, all: true },
  { t: 'conv.ok', id: 10, conv: 'g:ABCDEFGHJKMNPQRSTVWXYZ0123', seq: 1 },
  { t: 'keys.low', remaining: 3, threshold: 10 },
  { t: 'members.page', id: 20, conv: 'g:x', members: [{ user: 'alice', role: 'owner', joined: entry.ts }], next: 'alice' },
  { t: 'members.page', id: 21, conv: 'g:x', members: [], next: null },
  { t: 'receipts.state', id: 22, conv: 'g:x', seq: 7, delivered: ['alice', 'bob'], read: ['alice'], deliveredAll: 7, readAll: 3 },
  { t: 'error', id: 1, code: 'not_member', msg: 'not a member', retry: false },
  { t: 'error', code: 'invalid_field', msg: 'bad seq', retry: false, field: 'seq' },
];

t.test('every client frame round-trips through encodeClientFrame and decodeClientFrame', async (t) => {
  t.same(new Set(clientFrames.map((f) => f.t)), new Set(CLIENT_FRAME_TYPES), 'every client frame type is covered');
  for (const frame of clientFrames) {
    const result = decodeClientFrame(encodeClientFrame(frame), limits);
    t.ok(result.ok, `${frame.t} decodes`);
    if (result.ok) t.same(plain(result.frame), plain(frame), `${frame.t} is unchanged`);
  }
});

t.test('every server frame round-trips through encodeServerFrame and decodeServerFrame', async (t) => {
  t.same(new Set(serverFrames.map((f) => f.t)), new Set(SERVER_FRAME_TYPES), 'every server frame type is covered');
  for (const frame of serverFrames) {
    const result = decodeServerFrame(encodeServerFrame(frame));
    t.ok(result.ok, `${frame.t} decodes`);
    if (result.ok) t.same(plain(result.frame), plain(frame), `${frame.t} is unchanged`);
  }
});

t.test('encodeClientFrame leaves out undefined keys so the strict decoder accepts the frame', async (t) => {
  const frame = { t: 'sync', id: 1, cursors: undefined, limit: undefined } as ClientFrame;
  const result = decodeClientFrame(encodeClientFrame(frame), limits);
  t.same(result, { ok: true, frame: { t: 'sync', id: 1 } });
});

t.test('an undefined optional field of a server frame travels as nil and reads as absent', async (t) => {
  const frame: ServerFrame = { t: 'receipt', conv: 'g:x', kind: 'read', user: 'bob', device: undefined, seq: 1 };
  const encoded = encodeServerFrame(frame);
  t.notOk(Buffer.from(encoded).includes(Buffer.from([0xd4, 0x00])), 'no msgpackr undefined extension');
  const result = decodeServerFrame(encoded);
  t.ok(result.ok);
  if (result.ok && result.frame.t === 'receipt') t.equal(result.frame.device, undefined);
});

t.test('an oversized frame is rejected before any decoding', async (t) => {
  // Not msgpack at all: only the length check can have produced frame_too_large.
  const garbage = new Uint8Array(limits.maxFrameBytes + 1).fill(0xc1);
  t.same(decodeClientFrame(garbage, limits), { ok: false, code: 'frame_too_large', msg: `frame of 65537 bytes exceeds 65536` });
  const small: DecodeLimits = { maxFrameBytes: 20, maxBodyBytes: 100 };
  const ping = encodeClientFrame({ t: 'ping', id: 1 });
  t.ok(decodeClientFrame(ping, { ...small, maxFrameBytes: ping.byteLength }).ok, 'a frame of exactly the limit passes');
  t.match(decodeClientFrame(ping, { ...small, maxFrameBytes: ping.byteLength - 1 }), { ok: false, code: 'frame_too_large' });
});

t.test('anything that is not a msgpack map with a string t is bad_frame', async (t) => {
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['array', rich.pack([{ t: 'ping', id: 1 }])],
    ['string', rich.pack('ping')],
    ['number', rich.pack(5)],
    ['nil', rich.pack(null)],
    ['bin', rich.pack(bytes(1, 2))],
    ['Date at top level', rich.pack(new Date(0))],
    ['Set at top level', rich.pack(new Set([1]))],
    ['RegExp at top level', rich.pack(/x/)],
    ['Error at top level', rich.pack(new Error('x'))],
    ['truncated map', encodeClientFrame({ t: 'ping', id: 1 }).subarray(0, 5)],
    ['trailing bytes', Buffer.concat([encodeClientFrame({ t: 'ping', id: 1 }), bytes(0x01)])],
    ['invalid first byte', bytes(0xc1)],
    ['array claiming 4 billion items', bytes(0xdd, 0xff, 0xff, 0xff, 0xff)],
    ['nesting deep enough to overflow the stack', new Uint8Array(60000).fill(0x91)],
    ['no t', rich.pack({ id: 1 })],
    ['numeric t', rich.pack({ t: 1, id: 1 })],
    ['bin t', rich.pack({ t: Buffer.from('ping'), id: 1 })],
  ];
  for (const [name, input] of cases) {
    const result = decodeClientFrame(input, limits);
    t.match(result, { ok: false, code: 'bad_frame' }, name);
  }
  t.match(decodeClientFrame(rich.pack({ id: 7 }), limits), { id: 7 }, 'the request id is kept when the frame has one');
});

t.test('presence frames are bounded and strict', async (t) => {
  const many = Array.from({ length: MAX_PRESENCE_TARGETS + 1 }, (_, i) => `u${i}`);
  t.match(decodeRaw({ t: 'presence.sub', id: 1, users: many }), { ok: false, code: 'invalid_field', field: 'users', id: 1 }, 'more users than MAX_PRESENCE_TARGETS');
  t.match(decodeRaw({ t: 'presence.sub', id: 2, convs: ['not a conversation'] }), { ok: false, code: 'invalid_field', id: 2 });
  t.match(decodeRaw({ t: 'typing', conv: 'd:alice:bob', state: 'shouting' }), { ok: false, code: 'invalid_field', field: 'state' });
  t.match(decodeRaw({ t: 'typing', conv: 'd:alice:bob', state: 'typing', extra: 1 }), { ok: false, code: 'invalid_field' });
});

t.test('an unknown frame type is unknown_type and keeps the request id', async (t) => {
  t.same(decodeRaw({ t: 'typos', id: 9 }), { ok: false, code: 'unknown_type', msg: 'unknown frame type "typos"', id: 9 });
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'sent', 'msg', '']) {
    t.match(decodeRaw({ t: name, id: 1 }), { ok: false, code: 'unknown_type' }, `t = ${JSON.stringify(name)}`);
  }
  const long = decodeRaw({ t: 'x'.repeat(10_000) });
  t.ok(!long.ok && long.msg.length < 100, 'client text in messages is cut short');
});

t.test('an unknown key is invalid_field naming the key', async (t) => {
  t.same(decodeRaw({ t: 'ping', id: 1, extra: true }), {
    ok: false, code: 'invalid_field', msg: 'unknown field "extra"', id: 1, field: 'extra',
  });
  t.match(decodeRaw({ t: 'dack', conv: 'g:x', seq: 1, id: 3 }), { code: 'invalid_field', field: 'id' }, 'dack has no id');
  t.match(decodeRaw({ t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: bytes(1), __proto__x: 1 }), { code: 'invalid_field' });
});

t.test('missing and wrongly typed fields are invalid_field naming the field', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['missing id', { t: 'ping' }, 'id'],
    ['string id', { t: 'ping', id: '1' }, 'id'],
    ['boolean id', { t: 'ping', id: true }, 'id'],
    ['string seq', { t: 'dack', conv: 'g:x', seq: '5' }, 'seq'],
    ['nil seq', { t: 'dack', conv: 'g:x', seq: null }, 'seq'],
    ['numeric conv', { t: 'read', conv: 42, seq: 1 }, 'conv'],
    ['string body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: 'hello' }, 'body'],
    ['array body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: [1, 2] }, 'body'],
    ['Uint16Array body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: new Uint16Array([1]) }, 'body'],
    ['missing cmid', { t: 'send', id: 1, conv: 'g:x', body: bytes(1) }, 'cmid'],
    ['array cursors', { t: 'sync', id: 1, cursors: [1, 2] }, 'cursors'],
    ['string cursor', { t: 'sync', id: 1, cursors: { 'g:x': '3' } }, 'cursors.g:x'],
    ['invalid cursor key', { t: 'sync', id: 1, cursors: { 'not a conv': 3 } }, 'cursors.not a conv'],
    ['missing history limit', { t: 'history', id: 1, conv: 'g:x' }, 'limit'],
  ];
  for (const [name, frame, field] of cases) {
    t.match(decodeRaw(frame), { ok: false, code: 'invalid_field', field }, name);
  }
});

t.test('strings over their bounds or outside their alphabet are rejected', async (t) => {
  const send = { t: 'send', id: 1, cmid: 'c', body: bytes(1) };
  t.ok(decodeRaw({ ...send, cmid: 'x'.repeat(64), conv: 'g:x' }).ok, 'cmid of 64 characters');
  t.match(decodeRaw({ ...send, cmid: 'x'.repeat(65), conv: 'g:x' }), { code: 'invalid_field', field: 'cmid' });
  t.match(decodeRaw({ ...send, cmid: '', conv: 'g:x' }), { code: 'invalid_field', field: 'cmid' });
  t.match(decodeRaw({ ...send, cmid: 'has space', conv: 'g:x' }), { code: 'invalid_field', field: 'cmid' });
  t.match(decodeRaw({ ...send, cmid: 'é', conv: 'g:x' }), { code: 'invalid_field', field: 'cmid' });
  t.ok(decodeRaw({ ...send, to: 'u'.repeat(64) }).ok, 'user id of 64 characters');
  t.match(decodeRaw({ ...send, to: 'u'.repeat(65) }), { code: 'invalid_field', field: 'to' });
  t.match(decodeRaw({ ...send, to: 'a:b' }), { code: 'invalid_field', field: 'to' });
  t.match(decodeRaw({ ...send, to: '' }), { code: 'invalid_field', field: 'to' });
  t.ok(decodeRaw({ ...send, conv: 'g:' + 'c'.repeat(138) }).ok, 'conversation id of 140 characters');
  t.match(decodeRaw({ ...send, conv: 'g:' + 'c'.repeat(139) }), { code: 'invalid_field', field: 'conv' });
  t.match(decodeRaw({ ...send, conv: 'g:x\n' }), { code: 'invalid_field', field: 'conv' });
  t.match(decodeRaw({ ...send, conv: 'd:bob:alice' }), { code: 'invalid_field', field: 'conv' }, 'non-canonical direct id');
  t.match(decodeRaw({ ...send, conv: 'd:alice' }), { code: 'invalid_field', field: 'conv' }, 'malformed direct id');
});

t.test('integers must be non-negative safe integers', async (t) => {
  for (const seq of [-1, 1.5, -0.5, Number.NaN, Infinity, 2 ** 53, 1e300]) {
    t.match(decodeRaw({ t: 'dack', conv: 'g:x', seq }), { ok: false, code: 'invalid_field', field: 'seq' }, `seq ${seq}`);
  }
  t.match(decodeRaw({ t: 'ping', id: -3 }), { code: 'invalid_field', field: 'id' });
  t.match(decodeRaw({ t: 'ping', id: 2n ** 60n }), { code: 'invalid_field', field: 'id' }, 'a uint64 beyond 2^53');
  t.match(decodeRaw({ t: 'history', id: 1, conv: 'g:x', limit: 0 }), { code: 'invalid_field', field: 'limit' });
  t.match(decodeRaw({ t: 'history', id: 1, conv: 'g:x', limit: 501 }), { code: 'invalid_field', field: 'limit' });
  t.match(decodeRaw({ t: 'sync', id: 1, limit: 501 }), { code: 'invalid_field', field: 'limit' });
  t.match(decodeRaw({ t: 'history', id: 1, conv: 'g:x', before: -1, limit: 5 }), { code: 'invalid_field', field: 'before' });
});

t.test('integers sent with wider msgpack types than needed are accepted', async (t) => {
  // { t: 'ping', id: 5 } with id as uint64 and as float64, as some msgpack libraries write them.
  const head = [0x82, 0xa1, 0x74, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0xa2, 0x69, 0x64];
  t.same(decodeClientFrame(bytes(...head, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5), limits), { ok: true, frame: { t: 'ping', id: 5 } });
  t.same(decodeClientFrame(bytes(...head, 0xcb, 0x40, 0x14, 0, 0, 0, 0, 0, 0), limits), { ok: true, frame: { t: 'ping', id: 5 } });
});

t.test('msgpack extension values in fields are rejected', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['Date as cmid', { t: 'send', id: 1, conv: 'g:x', cmid: new Date(0), body: bytes(1) }, 'cmid'],
    ['Date as seq', { t: 'dack', conv: 'g:x', seq: new Date(5) }, 'seq'],
    ['RegExp as conv', { t: 'read', conv: /g:x/, seq: 1 }, 'conv'],
    ['Set as cursors', { t: 'sync', id: 1, cursors: new Set(['g:x']) }, 'cursors'],
    ['Error as body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: new Error('boom') }, 'body'],
    ['Date as body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: new Date(0) }, 'body'],
    ['Float64Array as body', { t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: new Float64Array([1]) }, 'body'],
    ['map as conv', { t: 'read', conv: { a: 1 }, seq: 1 }, 'conv'],
  ];
  for (const [name, frame, field] of cases) {
    t.match(decodeRaw(frame), { ok: false, code: 'invalid_field', field }, name);
  }
  // { t: 'ping', id: <msgpackr BigInt extension 0x42 holding 5> }
  const bigintId = bytes(0x82, 0xa1, 0x74, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0xa2, 0x69, 0x64, 0xd4, 0x42, 0x05);
  t.match(decodeClientFrame(bigintId, limits), { ok: false, code: 'invalid_field', field: 'id' }, 'BigInt extension as id');
  // A record definition (msgpackr extension 0x72) must not leak into the next frame.
  const recordFrame = new Packr({ useRecords: true }).pack({ t: 'ping', id: 1 });
  t.same(decodeClientFrame(recordFrame, limits), { ok: true, frame: { t: 'ping', id: 1 } }, 'a record decodes to a plain map');
  // Were the record's structure (slot 0x40: keys t, id) kept, these bytes would read as { t: 'ping', id: 1 }.
  t.match(decodeClientFrame(bytes(0x40, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0x01), limits), { ok: false, code: 'bad_frame' }, 'no structure leaks');
});

t.test('send needs exactly one of to and conv', async (t) => {
  const base = { t: 'send', id: 4, cmid: 'c', body: bytes(1) };
  t.same(decodeRaw({ ...base, to: 'bob', conv: 'g:x' }), {
    ok: false, code: 'invalid_field', msg: 'field "conv": exactly one of to and conv', id: 4, field: 'conv',
  });
  t.match(decodeRaw(base), { ok: false, code: 'invalid_field', field: 'conv' });
  t.match(decodeRaw({ ...base, to: null, conv: 'g:x' }), { ok: false, code: 'invalid_field', field: 'to' }, 'nil is not absent');
});

t.test('a body over maxBodyBytes is body_too_large; one at the limit passes', async (t) => {
  const l: DecodeLimits = { maxFrameBytes: 65536, maxBodyBytes: 1000 };
  const send = (n: number) => encodeClientFrame({ t: 'send', id: 8, conv: 'g:x', cmid: 'c', body: new Uint8Array(n) });
  t.ok(decodeClientFrame(send(1000), l).ok);
  t.same(decodeClientFrame(send(1001), l), { ok: false, code: 'body_too_large', msg: 'body exceeds 1000 bytes', id: 8, field: 'body' });
  t.match(decodeClientFrame(send(1001), { ...l, maxBodyBytes: 2000 }), { ok: true }, 'the limit comes from the caller');
});

t.test('sync cursors are bounded', async (t) => {
  const cursors = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`g:${i}`, i]));
  const big: DecodeLimits = { maxFrameBytes: 1 << 20, maxBodyBytes: 1000 };
  t.ok(decodeRaw({ t: 'sync', id: 1, cursors: cursors(MAX_SYNC_CURSORS) }, big).ok);
  t.match(decodeRaw({ t: 'sync', id: 1, cursors: cursors(MAX_SYNC_CURSORS + 1) }, big), { code: 'invalid_field', field: 'cursors' });
});

t.test('a decoded body is a copy, independent of the input buffer', async (t) => {
  const input = encodeClientFrame({ t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: bytes(1, 2, 3) });
  const copy = Uint8Array.from(input);
  const result = decodeClientFrame(copy, limits);
  copy.fill(0);
  t.ok(result.ok);
  if (result.ok && result.frame.t === 'send') t.same(Array.from(result.frame.body), [1, 2, 3]);
});

t.test('server frames decode leniently: unknown keys dropped, unknown types reported, types checked', async (t) => {
  const extra = decodeServerFrame(rich.pack({ t: 'pong', id: 1, serverTime: 5 }));
  t.same(extra, { ok: true, frame: { t: 'pong', id: 1 } });
  t.match(decodeServerFrame(rich.pack({ t: 'typing', conv: 'g:x' })), { ok: false, code: 'unknown_type' });
  t.match(decodeServerFrame(rich.pack({ t: 'sent', id: 1, conv: 'g:x', seq: '1', mid: 'm', dup: false, ts: 1 })), {
    ok: false, code: 'invalid_field', field: 'seq', id: 1,
  });
  t.match(decodeServerFrame(rich.pack(['pong'])), { ok: false, code: 'bad_frame' });
  t.match(decodeServerFrame(rich.pack({ t: 'error', code: 'from_the_future', msg: 'x', retry: true })), { ok: true }, 'unknown error codes pass');
});

t.test('errorFrame takes retry from the code table', async (t) => {
  t.same(errorFrame('store_unavailable', 'timeout', 3), { t: 'error', code: 'store_unavailable', msg: 'timeout', retry: true, id: 3 });
  t.same(errorFrame('invalid_field', 'bad', undefined, 'seq'), { t: 'error', code: 'invalid_field', msg: 'bad', retry: false, field: 'seq' });
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    t.equal(errorFrame(code as keyof typeof ERROR_CODES, '').retry, info.retry, code);
  }
});

// ---- codes ---------------------------------------------------------------------------------------

t.test('close codes 4000-4499 are reconnectable and 4500-4999 are not', async (t) => {
  for (const [name, code] of Object.entries(CLOSE)) {
    t.ok(code >= 4000 && code <= 4999, `${name} is an application close code`);
    t.equal(isReconnectable(code), code < 4500, `${name} (${code})`);
    t.ok(Buffer.byteLength(CLOSE_REASONS[code]) <= 123, `${name} reason fits a close frame`);
  }
  t.equal(new Set(Object.values(CLOSE)).size, Object.keys(CLOSE).length, 'codes are distinct');
  t.ok(isReconnectable(1006), 'abnormal closure');
  t.ok(isReconnectable(1001), 'going away');
  t.ok(isReconnectable(4499));
  t.notOk(isReconnectable(4500));
  t.notOk(isReconnectable(4999));
  t.ok(isReconnectable(5000));
});

t.test('isErrorCode knows exactly the table', async (t) => {
  t.ok(isErrorCode('not_member'));
  t.notOk(isErrorCode('toString'));
  t.notOk(isErrorCode('nope'));
  t.notOk(isErrorCode(5));
});

// ---- ids -----------------------------------------------------------------------------------------

t.test('directConversationId is symmetric, canonical and parseable', async (t) => {
  t.equal(directConversationId('alice', 'bob'), 'd:alice:bob');
  t.equal(directConversationId('bob', 'alice'), 'd:alice:bob');
  t.equal(directConversationId('alice', 'alice'), 'd:alice:alice', 'note to self');
  t.equal(directConversationId('Zed', 'amy'), directConversationId('amy', 'Zed'));
  const pairs: [string, string][] = [['a', 'b'], ['user.1', 'user-1'], ['x@y', 'x_y'], ['A'.repeat(64), 'z'.repeat(64)]];
  for (const [a, b] of pairs) {
    const id = directConversationId(a, b);
    t.equal(id, directConversationId(b, a), `${a} / ${b}`);
    t.ok(isConversationId(id), 'is a valid conversation id');
    t.same(parseDirectConversationId(id), [a, b].sort());
  }
  t.throws(() => directConversationId('a:b', 'c'), RangeError);
  t.throws(() => directConversationId('', 'c'), RangeError);
  t.equal(parseDirectConversationId('d:bob:alice'), null, 'unsorted is not canonical');
  t.equal(parseDirectConversationId('d:a:b:c'), null);
  t.equal(parseDirectConversationId('g:a:b'), null);
  t.notOk(isConversationId('d:bob:alice'));
  t.ok(isConversationId('g:team'));
  t.notOk(isConversationId(''));
  t.notOk(isUserId('a b'));
  t.notOk(isUserId('u'.repeat(65)));
});

t.test('message ids sort by creation time and are strictly increasing within a thread', async (t) => {
  const next = createMessageIdGenerator();
  const times = [0, 1, 31, 32, 1_000, 1_760_000_000_000, 1_760_000_000_001, 2 ** 48 - 2];
  const ids = times.map((ms) => next(ms));
  t.same([...ids].sort(), ids, 'string order is time order');
  ids.forEach((id, i) => {
    t.ok(isMessageId(id), `${id} is a message id`);
    t.equal(messageIdTimeMs(id), times[i], 'time decodes back');
  });
  // Same millisecond and a clock that stepped back: still increasing.
  const a = next(2 ** 48 - 2);
  const b = next(5);
  t.ok(ids[ids.length - 1]! < a && a < b, 'monotonic in the same millisecond and after a step back');
  t.equal(messageIdTimeMs(b), 2 ** 48 - 2, 'a clock step back reuses the last time');
  t.equal(messageIdTimeMs('not an id'), null);
  t.notOk(isMessageId('8' + '0'.repeat(25)), 'first character above 7 overflows 48 bits');
});

t.test('10,000 message ids are unique and sorted in generation order', async (t) => {
  const ids = Array.from({ length: 10_000 }, () => newMessageId());
  t.equal(new Set(ids).size, ids.length, 'unique');
  t.same([...ids].sort(), ids, 'sorted');
  t.ok(ids.every(isMessageId), 'well formed');
  const now = Date.now();
  t.ok(Math.abs(messageIdTimeMs(ids[ids.length - 1]!)! - now) < 60_000, 'time is the wall clock');
});

t.test('message ids from independent generators in the same millisecond do not collide', async (t) => {
  const generators = Array.from({ length: 20 }, () => createMessageIdGenerator());
  const seen = new Set<string>();
  for (const next of generators) {
    for (let i = 0; i < 500; i++) seen.add(next(1_760_000_000_000));
  }
  t.equal(seen.size, 10_000);
});

t.test('group and channel ids are derived from (user, kind, cmid) and are conversation ids', async (t) => {
  const { createHash } = await import('node:crypto');
  const { derivedConversationId, derivedIdInput, GROUP_ID_PATTERN } = await import('../../src/protocol/ids.js');
  const id = (user: string, kind: 'group' | 'channel', cmid: string) => derivedConversationId(kind, createHash('sha256').update(derivedIdInput(user, kind, cmid)).digest());
  const g = id('alice', 'group', 'c1');
  t.match(g, GROUP_ID_PATTERN);
  t.ok(g.startsWith('g:') && g.length === 28);
  t.ok(isConversationId(g), 'accepted as a conversation id');
  t.equal(id('alice', 'group', 'c1'), g, 'same request, same id');
  t.not(id('bob', 'group', 'c1'), g, 'another user');
  t.not(id('alice', 'group', 'c2'), g, 'another cmid');
  const c = id('alice', 'channel', 'c1');
  t.ok(c.startsWith('c:') && isConversationId(c));
  t.not(c.slice(2), g.slice(2), 'the kind is part of the hash');
  // A fixed vector: SHA-256 of "alice\0group\0c1", first 130 bits in Crockford base32.
  const digest = createHash('sha256').update('alice\u0000group\u0000c1').digest();
  let bits = '';
  for (const b of digest) bits += b.toString(2).padStart(8, '0');
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let expected = 'g:';
  for (let i = 0; i < 26; i++) expected += alphabet[parseInt(bits.slice(i * 5, i * 5 + 5), 2)];
  t.equal(g, expected);
});

t.test('group frames: bounds and strictness', async (t) => {
  const fieldOf = (v: unknown) => {
    const r = decodeRaw(v);
    return r.ok ? 'ok' : r.field;
  };
  const users = (n: number) => Array.from({ length: n }, (_, i) => `u${i}`);
  t.equal(fieldOf({ t: 'member.add', id: 1, conv: 'g:x', users: users(256) }), 'ok', '256 users');
  t.equal(fieldOf({ t: 'member.add', id: 1, conv: 'g:x', users: users(257) }), 'users', '257 users');
  t.equal(fieldOf({ t: 'member.add', id: 1, conv: 'g:x', users: [] }), 'users', 'no user');
  t.equal(fieldOf({ t: 'member.add', id: 1, conv: 'g:x', users: ['bob'], role: 'owner' }), 'role', 'add as owner is not a thing');
  t.equal(fieldOf({ t: 'member.role', id: 1, conv: 'g:x', user: 'bob', role: 'king' }), 'role');
  t.equal(fieldOf({ t: 'conv.create', id: 1, cmid: 'c', kind: 'direct' }), 'kind', 'direct conversations are created by sends');
  t.equal(fieldOf({ t: 'conv.create', id: 1, cmid: 'c', kind: 'group', name: 'x'.repeat(129) }), 'name');
  t.equal(fieldOf({ t: 'conv.create', id: 1, cmid: 'c', kind: 'group', avatar: 'not-a-media-id' }), 'avatar');
  t.equal(fieldOf({ t: 'conv.create', id: 1, cmid: 'c', kind: 'group', members: users(257) }), 'members');
  t.equal(fieldOf({ t: 'conv.meta', id: 1, conv: 'g:x' }), 'name', 'meta needs name or avatar');
  t.equal(fieldOf({ t: 'members', id: 1, conv: 'g:x', limit: 0 }), 'limit');
  t.equal(fieldOf({ t: 'receipts', id: 1, conv: 'g:x', seq: -1 }), 'seq');
  t.equal(fieldOf({ t: 'conv.leave', id: 1, conv: 'g:x', extra: 1 }), 'extra', 'unknown keys are refused');
  t.equal(fieldOf({ t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: bytes(), media: Array(17).fill('a'.repeat(64)) }), 'media', 'at most 16 media ids');
  t.equal(fieldOf({ t: 'send', id: 1, conv: 'g:x', cmid: 'c', body: bytes(), media: ['A'.repeat(64)] }), 'media.0', 'lower-case hex only');
});
