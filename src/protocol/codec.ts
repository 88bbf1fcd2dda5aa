import { Packr, Unpackr } from 'msgpackr';
import type { z } from 'zod';
import type { ClientFrame, ClientFrameType, ServerFrame, ServerFrameType } from './client-frames.js';
import { BODY_TOO_LARGE_PARAM, createClientFrameSchemas, SERVER_FRAME_SCHEMAS, type ClientFrameSchemas } from './client-frame-schemas.js';
import type { ErrorCode } from './codes.js';

/**
 * msgpack encoding and decoding of client protocol frames. Pure code: bytes in, data out.
 *
 * Decoding client frames is the server's untrusted-input boundary. msgpackr turns crafted extension
 * bytes into Date, RegExp, Set, Error, typed arrays or BigInt values whatever the options, so every
 * decoded frame goes through its strict schema and nothing unchecked is handed on. Failures are
 * results, not exceptions: the gateway answers them with an error frame (and, for bad_frame and
 * frame_too_large, a close code).
 */

export interface DecodeLimits {
  /** gateway.maxFrameBytes: checked before any decoding work. */
  maxFrameBytes: number;
  /** gateway.maxBodyBytes: bound of `send.body`. */
  maxBodyBytes: number;
}

export type DecodeErrorCode = Extract<
  ErrorCode,
  'bad_frame' | 'unknown_type' | 'invalid_field' | 'frame_too_large' | 'body_too_large'
>;

export interface DecodeFailure {
  ok: false;
  code: DecodeErrorCode;
  msg: string;
  /** The frame's request id when it had a valid one, so the error frame can answer that request. */
  id?: number;
  /** For invalid_field: the offending field as a dotted path. */
  field?: string;
}

export type DecodeResult<F> = { ok: true; frame: F } | DecodeFailure;

// Records and structured cloning off: every map is a plain object and nothing carries state from one
// frame to the next. Maps use their smallest header (fixmap for small frames). Undefined becomes nil
// rather than msgpackr's private extension, which other msgpack libraries cannot read.
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
});

// copyBuffers: bin values (bodies) are copied out of the input. uWebSockets.js reuses a message's
// ArrayBuffer once the handler returns, and a body outlives it (it is stored asynchronously). The
// copy costs about 0.5 µs per send; frames without bytes (dack, read, sync) pay nothing.
// int64AsType 'number': a small integer sent as uint64 by another msgpack library stays a number;
// one above 2^53 becomes an unsafe number, which the schemas reject.
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  copyBuffers: true,
  int64AsType: 'number',
});

/**
 * Encodes a server frame. No validation: the server builds its frames from checked data. The result
 * is a view into a buffer msgpackr shares between calls: write it at once, or copy it to keep it
 * (kept views were seen overwritten in a running node; src/gateway/connections.ts copies).
 */
export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  return packr.pack(frame);
}

/** Encodes a client frame (SDK side). Keys whose value is undefined are left out. */
export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(frame)) {
    if (value !== undefined) out[key] = value;
  }
  return packr.pack(out);
}

// Schemas depend on maxBodyBytes only; a node has one value (two during a config reload).
const schemaCache = new Map<number, ClientFrameSchemas>();
function clientSchemas(maxBodyBytes: number): ClientFrameSchemas {
  let schemas = schemaCache.get(maxBodyBytes);
  if (schemas === undefined) {
    if (schemaCache.size >= 8) schemaCache.clear();
    schemas = createClientFrameSchemas(maxBodyBytes);
    schemaCache.set(maxBodyBytes, schemas);
  }
  return schemas;
}

/** Decodes and strictly validates one client frame (server side). */
export function decodeClientFrame(bytes: Uint8Array, limits: DecodeLimits): DecodeResult<ClientFrame> {
  if (bytes.byteLength > limits.maxFrameBytes) {
    return { ok: false, code: 'frame_too_large', msg: `frame of ${bytes.byteLength} bytes exceeds ${limits.maxFrameBytes}` };
  }
  const raw = unpack(bytes);
  if (raw === undefined) return { ok: false, code: 'bad_frame', msg: 'frame is not a msgpack map' };
  const id = requestIdOf(raw);
  const t = raw['t'];
  if (typeof t !== 'string') return failure('bad_frame', 'frame has no string t', id);
  const schemas = clientSchemas(limits.maxBodyBytes);
  if (!Object.hasOwn(schemas, t)) return failure('unknown_type', `unknown frame type ${quote(t)}`, id);
  const parsed = schemas[t as ClientFrameType].safeParse(raw);
  if (parsed.success) return { ok: true, frame: parsed.data };
  return fromIssue(parsed.error.issues[0], id);
}

/**
 * Decodes one server frame (SDK side). Lenient: unknown keys are dropped and optional fields may be
 * nil. An `unknown_type` result is a frame from a newer server; clients ignore it.
 */
export function decodeServerFrame(bytes: Uint8Array): DecodeResult<ServerFrame> {
  const raw = unpack(bytes);
  if (raw === undefined) return { ok: false, code: 'bad_frame', msg: 'frame is not a msgpack map' };
  const t = raw['t'];
  if (typeof t !== 'string') return { ok: false, code: 'bad_frame', msg: 'frame has no string t' };
  if (!Object.hasOwn(SERVER_FRAME_SCHEMAS, t)) return { ok: false, code: 'unknown_type', msg: `unknown frame type ${quote(t)}` };
  const parsed = SERVER_FRAME_SCHEMAS[t as ServerFrameType].safeParse(raw);
  if (parsed.success) return { ok: true, frame: parsed.data };
  return fromIssue(parsed.error.issues[0], requestIdOf(raw));
}

/** The decoded value when it is a plain map, else undefined (undecodable, or any other type). */
function unpack(bytes: Uint8Array): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    // Truncated data, trailing bytes, nesting deep enough to overflow the stack: all bad_frame.
    return undefined;
  }
  // mapsAsObjects yields plain objects; Date, Set, RegExp, Error, arrays and buffers have other
  // prototypes and are not frames.
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  return value as Record<string, unknown>;
}

function requestIdOf(raw: Record<string, unknown>): number | undefined {
  const id = raw['id'];
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : undefined;
}

function failure(code: DecodeErrorCode, msg: string, id: number | undefined, field?: string): DecodeFailure {
  const out: DecodeFailure = { ok: false, code, msg };
  if (id !== undefined) out.id = id;
  if (field !== undefined) out.field = field;
  return out;
}

/** Client-controlled text in messages is quoted and cut short: it ends up in logs. */
function quote(text: string): string {
  return JSON.stringify(text.length > 64 ? text.slice(0, 64) + '…' : text);
}

function fromIssue(issue: z.core.$ZodIssue | undefined, id: number | undefined): DecodeFailure {
  if (issue === undefined) return failure('invalid_field', 'invalid frame', id);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    return failure('invalid_field', `unknown field ${quote(key)}`, id, key.slice(0, 64));
  }
  const field = issue.path.map(String).join('.').slice(0, 140);
  if (issue.code === 'custom' && issue.params?.['reason'] === BODY_TOO_LARGE_PARAM) {
    return failure('body_too_large', issue.message, id, field);
  }
  const what = issue.code === 'invalid_key' ? 'invalid key' : issue.message;
  return failure('invalid_field', `field ${quote(field)}: ${what}`, id, field);
}
