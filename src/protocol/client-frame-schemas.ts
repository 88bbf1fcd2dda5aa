import { z } from 'zod';
import { isConversationId, isMediaId, isUserId } from './ids.js';
import {
  CLIENT_MSG_ID_PATTERN,
  MAX_PAGE_LIMIT,
  MAX_SEND_MEDIA,
  MAX_SYNC_CURSORS,
  type ClientFrameOf,
  type ClientFrameType,
  type SendFrame,
  type ServerFrameOf,
  type ServerFrameType,
} from './client-frames.js';
import { MAX_CONV_NAME, MAX_MEMBERS_PER_OP } from './client-conv-frames.js';
import { MAX_PRESENCE_TARGETS } from './client-presence-frames.js';

/**
 * Schemas of the client wire protocol's frames (types in client-frames.ts and the files beside it):
 * strict ones for client frames, which the server validates every frame against, and lenient ones
 * for server frames, which the SDK reads with.
 */

// ---- schemas: client frames (strict) --------------------------------------------------------------

const uint = z.int({ error: 'expected a non-negative safe integer' }).nonnegative({ error: 'expected a non-negative safe integer' });
const conversationId = z.string({ error: 'expected a conversation id' }).refine(isConversationId, { error: 'expected a conversation id' });
const userId = z.string({ error: 'expected a user id' }).refine(isUserId, { error: 'expected a user id' });
const clientMsgId = z.string({ error: 'expected a string' }).regex(CLIENT_MSG_ID_PATTERN, { error: 'expected 1 to 64 printable ASCII characters' });
const pageLimit = uint.min(1, { error: 'expected at least 1' }).max(MAX_PAGE_LIMIT, { error: `expected at most ${MAX_PAGE_LIMIT}` });

const role = z.enum(['owner', 'admin', 'member']);
const mediaId = z.string({ error: 'expected a media id' }).refine(isMediaId, { error: 'expected a media id (64 lower-case hex digits)' });
const convName = z.string({ error: 'expected a string' }).max(MAX_CONV_NAME, { error: `at most ${MAX_CONV_NAME} characters` });
const opUsers = z.array(userId).max(MAX_MEMBERS_PER_OP, { error: `at most ${MAX_MEMBERS_PER_OP} users` });

const presenceUsers = z.array(userId).max(MAX_PRESENCE_TARGETS, { error: `at most ${MAX_PRESENCE_TARGETS} users` });
const presenceConvs = z.array(conversationId).max(MAX_PRESENCE_TARGETS, { error: `at most ${MAX_PRESENCE_TARGETS} conversations` });

/** Marks the issue that becomes `body_too_large` instead of `invalid_field`. */
export const BODY_TOO_LARGE_PARAM = 'body_too_large';

export type ClientFrameSchemas = { readonly [K in ClientFrameType]: z.ZodType<ClientFrameOf<K>> };

/** Strict schemas of every client frame, with `send.body` bounded by `maxBodyBytes`. */
export function createClientFrameSchemas(maxBodyBytes: number): ClientFrameSchemas {
  const body = z
    .instanceof(Uint8Array, { error: 'expected bytes (msgpack bin)' })
    .refine((b) => b.byteLength <= maxBodyBytes, {
      error: `body exceeds ${maxBodyBytes} bytes`,
      params: { reason: BODY_TOO_LARGE_PARAM },
    });
  const send = z
    .strictObject({
      t: z.literal('send'),
      id: uint,
      to: userId.optional(),
      conv: conversationId.optional(),
      cmid: clientMsgId,
      body,
      media: z.array(mediaId).max(MAX_SEND_MEDIA, { error: `at most ${MAX_SEND_MEDIA} media ids` }).optional(),
    })
    .refine((f) => (f.to === undefined) !== (f.conv === undefined), {
      error: 'exactly one of to and conv',
      path: ['conv'],
    });
  return {
    // The refinement above is what makes the output the `to` xor `conv` union zod cannot express.
    send: send as z.ZodType<SendFrame>,
    dack: z.strictObject({ t: z.literal('dack'), conv: conversationId, seq: uint }),
    read: z.strictObject({ t: z.literal('read'), conv: conversationId, seq: uint }),
    sync: z.strictObject({
      t: z.literal('sync'),
      id: uint,
      cursors: z
        .record(conversationId, uint)
        .refine((c) => Object.keys(c).length <= MAX_SYNC_CURSORS, { error: `more than ${MAX_SYNC_CURSORS} cursors` })
        .optional(),
      limit: pageLimit.optional(),
    }),
    history: z.strictObject({
      t: z.literal('history'),
      id: uint,
      conv: conversationId,
      before: uint.optional(),
      limit: pageLimit,
    }),
    ping: z.strictObject({ t: z.literal('ping'), id: uint }),
    'presence.sub': z.strictObject({ t: z.literal('presence.sub'), id: uint, users: presenceUsers.optional(), convs: presenceConvs.optional() }),
    'presence.unsub': z.strictObject({ t: z.literal('presence.unsub'), users: presenceUsers.optional(), convs: presenceConvs.optional() }),
    typing: z.strictObject({ t: z.literal('typing'), conv: conversationId, state: z.enum(['typing', 'paused']) }),
    'conv.create': z.strictObject({
      t: z.literal('conv.create'),
      id: uint,
      cmid: clientMsgId,
      kind: z.enum(['group', 'channel']),
      name: convName.optional(),
      avatar: mediaId.optional(),
      members: opUsers.optional(),
    }),
    'member.add': z.strictObject({
      t: z.literal('member.add'),
      id: uint,
      conv: conversationId,
      users: opUsers.min(1, { error: 'at least 1 user' }),
      role: z.enum(['member', 'admin']).optional(),
    }),
    'member.remove': z.strictObject({ t: z.literal('member.remove'), id: uint, conv: conversationId, user: userId }),
    'member.role': z.strictObject({ t: z.literal('member.role'), id: uint, conv: conversationId, user: userId, role }),
    'conv.leave': z.strictObject({ t: z.literal('conv.leave'), id: uint, conv: conversationId }),
    'conv.join': z.strictObject({ t: z.literal('conv.join'), id: uint, conv: conversationId }),
    'conv.meta': z
      .strictObject({ t: z.literal('conv.meta'), id: uint, conv: conversationId, name: convName.optional(), avatar: mediaId.optional() })
      .refine((f) => f.name !== undefined || f.avatar !== undefined, { error: 'at least one of name and avatar', path: ['name'] }),
    members: z.strictObject({ t: z.literal('members'), id: uint, conv: conversationId, after: userId.optional(), limit: pageLimit }),
    receipts: z.strictObject({ t: z.literal('receipts'), id: uint, conv: conversationId, seq: uint }),
  };
}

export const CLIENT_FRAME_TYPES = Object.keys(createClientFrameSchemas(0)) as ClientFrameType[];

// ---- schemas: server frames (lenient, for the SDK) ------------------------------------------------

// Unknown keys are dropped, types are checked, ranges are not: the server is trusted to keep them,
// and a newer server may widen them. An optional field may arrive as nil.
function optional<T extends z.ZodType>(schema: T) {
  return schema.nullish().transform((v) => v ?? undefined);
}
const num = z.number();
const str = z.string();
const bytes = z.instanceof(Uint8Array, { error: 'expected bytes (msgpack bin)' });
const kind = z.enum(['direct', 'group', 'channel']);
const sysEvent = z.object({
  op: z.enum(['create', 'add', 'remove', 'leave', 'role', 'meta']),
  by: str,
  users: optional(z.array(str)),
  role: optional(z.enum(['owner', 'admin', 'member'])),
  name: optional(str),
  avatar: optional(str),
  kind: optional(z.enum(['group', 'channel'])),
});
const messageEntry = z.object({
  seq: num,
  mid: str,
  from: str,
  fdev: str,
  body: bytes,
  ts: num,
  cmid: optional(str),
  sys: optional(sysEvent),
  media: optional(z.array(str)),
});

export const SERVER_FRAME_SCHEMAS: { readonly [K in ServerFrameType]: z.ZodType<ServerFrameOf<K>> } = {
  hello: z.object({
    t: z.literal('hello'),
    v: num,
    user: str,
    device: str,
    node: str,
    limits: z.object({
      maxFrameBytes: num,
      maxBodyBytes: num,
      framesPerSecond: num,
      idleTimeoutS: num,
      maxInflightRequests: num,
    }),
  }),
  sent: z.object({ t: z.literal('sent'), id: num, conv: str, seq: num, mid: str, dup: z.boolean(), ts: num }),
  msg: messageEntry.extend({ t: z.literal('msg'), conv: str, kind }),
  receipt: z.object({
    t: z.literal('receipt'),
    conv: str,
    kind: z.enum(['delivered', 'read']),
    user: str,
    device: optional(str),
    seq: num,
    all: optional(z.literal(true)),
  }),
  'sync.batch': z.object({
    t: z.literal('sync.batch'),
    id: num,
    conv: str,
    kind,
    msgs: z.array(messageEntry),
    head: num,
    expired: optional(z.boolean()),
    retainedFrom: optional(num),
    from: optional(num),
  }),
  synced: z.object({
    t: z.literal('synced'),
    id: num,
    heads: z.record(str, num),
    reads: z.record(str, num),
    more: z.boolean(),
    peers: optional(z.record(str, z.object({ user: str, delivered: num, read: num }))),
    unread: optional(z.record(str, num)),
    unreadTotal: optional(num),
    from: optional(z.record(str, num)),
    left: optional(z.record(str, num)),
  }),
  'keys.low': z.object({ t: z.literal('keys.low'), remaining: num, threshold: num }),
  'history.page': z.object({
    t: z.literal('history.page'),
    id: num,
    conv: str,
    msgs: z.array(messageEntry),
    next: num.nullable(),
    expired: z.boolean(),
    from: optional(num),
  }),
  pong: z.object({ t: z.literal('pong'), id: num }),
  'presence.state': z.object({
    t: z.literal('presence.state'),
    id: num,
    users: z.array(z.object({ user: str, online: z.boolean(), lastSeen: num.nullable() })),
  }),
  presence: z.object({ t: z.literal('presence'), user: str, online: z.boolean(), lastSeen: num.nullable() }),
  'typing.event': z.object({ t: z.literal('typing.event'), conv: str, user: str, device: str, state: z.enum(['typing', 'paused']) }),
  'conv.ok': z.object({ t: z.literal('conv.ok'), id: num, conv: str, seq: num }),
  'members.page': z.object({
    t: z.literal('members.page'),
    id: num,
    conv: str,
    members: z.array(z.object({ user: str, role: z.enum(['owner', 'admin', 'member']), joined: num })),
    next: str.nullable(),
  }),
  'receipts.state': z.object({
    t: z.literal('receipts.state'),
    id: num,
    conv: str,
    seq: num,
    delivered: z.array(str),
    read: z.array(str),
    deliveredAll: num,
    readAll: num,
  }),
  error: z.object({
    t: z.literal('error'),
    id: optional(num),
    code: str,
    msg: str,
    retry: z.boolean(),
    field: optional(str),
  }),
};

export const SERVER_FRAME_TYPES = Object.keys(SERVER_FRAME_SCHEMAS) as ServerFrameType[];
