import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from './codes.js';
import { isConversationId, isMediaId, isUserId } from './ids.js';

/**
 * Frames of the client wire protocol, version 1: one msgpack map `{ t, ...fields }` per binary
 * WebSocket message. docs/PROTOCOL.md is the prose contract; these types and schemas are the
 * executable one. Pure code, shared by the gateway and the client SDK.
 *
 * Strict one way, lenient the other: the server rejects any client frame that is not exactly as
 * described (unknown keys, wrong types, out-of-range values), while clients accept server frames with
 * extra keys and ignore unknown frame types, so a server can add fields and frames within version 1.
 *
 * Integers (ids, seqs, timestamps) are non-negative safe integers. On the wire any msgpack number
 * type that holds the exact value is accepted (timestamps above 2^32 travel as float64).
 */

export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

/** Client message ids: printable ASCII without space, 1 to 64 characters (a UUID fits). */
export const CLIENT_MSG_ID_PATTERN = /^[\x21-\x7e]{1,64}$/;
/** Upper bound of `sync.limit` and `history.limit`. The server may return fewer (byte budget). */
export const MAX_PAGE_LIMIT = 500;
/** `sync.limit` when the client gives none. */
export const DEFAULT_SYNC_LIMIT = 100;
/** Most entries in `sync.cursors`. Frame size bounds it lower in practice (about 1,000 ids). */
export const MAX_SYNC_CURSORS = 4096;
/**
 * Requests awaiting an answer per connection (sent as hello.limits.maxInflightRequests). A protocol
 * constant rather than a config key: it bounds per-connection server memory, not a deployment choice.
 */
export const MAX_INFLIGHT_REQUESTS = 64;
/**
 * Most users plus conversations in one `presence.sub` or `presence.unsub`. What a connection may
 * watch in all is cluster.presenceCap (exceeding it answers too_many_watches).
 */
export const MAX_PRESENCE_TARGETS = 256;

/** Most media ids in one `send.media`. */
export const MAX_SEND_MEDIA = 16;
/** Most users in one `member.add` or `conv.create.members`. */
export const MAX_MEMBERS_PER_OP = 256;
/** Longest group or channel name, in UTF-16 code units. */
export const MAX_CONV_NAME = 128;

export type ConversationKind = 'direct' | 'group' | 'channel';
export type ReceiptKind = 'delivered' | 'read';
/** A member's role in a group or channel. Direct conversations have two `member`s. */
export type Role = 'owner' | 'admin' | 'member';
/** Kinds a client can create (direct conversations are created by the first send). */
export type CreatableKind = 'group' | 'channel';
export type SysOp = 'create' | 'add' | 'remove' | 'leave' | 'role' | 'meta';

/**
 * A membership or metadata event of a group or channel, ordered in the log like a message (it holds
 * a seq; its entry has an empty body). `by` made the change; `users` are the users it concerns
 * (created with, added, removed, leaving, or whose role changed to `role`).
 */
export interface SysEvent {
  op: SysOp;
  by: string;
  users?: string[];
  role?: Role;
  name?: string;
  avatar?: string;
  kind?: CreatableKind;
}

// ---- client -> server ----------------------------------------------------------------------------

interface SendBase {
  t: 'send';
  /** Request id, echoed by `sent` or `error`. Chosen by the client; unique among its open requests. */
  id: number;
  /** Client message id: with the sending device, the idempotency key of the send. */
  cmid: string;
  /** Opaque bytes (the server never reads them), at most gateway.maxBodyBytes. */
  body: Uint8Array;
  /** Media ids (uploaded over HTTP) the message refers to, at most MAX_SEND_MEDIA. */
  media?: string[];
}
/** Send a message, addressed by exactly one of `to` (a user: the 1:1 conversation) or `conv`. */
export type SendFrame = SendBase & ({ to: string; conv?: undefined } | { conv: string; to?: undefined });

/** Delivered-ack: this device holds every message of `conv` up to `seq` (cumulative). No answer. */
export interface DackFrame {
  t: 'dack';
  conv: string;
  seq: number;
}

/** The user has read `conv` up to `seq` (cumulative, for all their devices). No answer. */
export interface ReadFrame {
  t: 'read';
  conv: string;
  seq: number;
}

/** One round of catch-up: `sync.batch` frames, then exactly one `synced`. */
export interface SyncFrame {
  t: 'sync';
  id: number;
  /** conv -> highest seq the device holds. Missing conversations use the stored delivered cursor. */
  cursors?: Record<string, number>;
  /** Most messages per conversation in this round; default DEFAULT_SYNC_LIMIT, max MAX_PAGE_LIMIT. */
  limit?: number;
}

/** A page of older messages, newest first. */
export interface HistoryFrame {
  t: 'history';
  id: number;
  conv: string;
  /** Exclusive upper bound; absent means from the newest message. */
  before?: number;
  limit: number;
}

export interface PingFrame {
  t: 'ping';
  id: number;
}

/**
 * Watch the presence (online, last seen) of `users` and the typing indicators of `convs`, the chats
 * open on this device (subscribe-on-open). Answered by `presence.state` with the users' current
 * presence; later changes arrive as `presence` and `typing.event` frames while the connection lives.
 * Idempotent; the watches of a connection end with it.
 */
export interface PresenceSubFrame {
  t: 'presence.sub';
  id: number;
  users?: string[];
  convs?: string[];
}

/** Stop watching (a chat was closed). No answer; unknown targets are ignored. */
export interface PresenceUnsubFrame {
  t: 'presence.unsub';
  users?: string[];
  convs?: string[];
}

/** This device's user is typing (or paused) in `conv`. Never stored; no answer. */
export interface TypingFrame {
  t: 'typing';
  conv: string;
  state: TypingState;
}

export type TypingState = 'typing' | 'paused';

/**
 * Create a group or channel; the creator is its owner, `members` join as `member`. The id is derived
 * from (user, kind, cmid), so a retried create returns the same conversation. Answered by `conv.ok`.
 */
export interface ConvCreateFrame {
  t: 'conv.create';
  id: number;
  cmid: string;
  kind: CreatableKind;
  name?: string;
  avatar?: string;
  members?: string[];
}

/** Add users to a group or channel (owner: any role; admin: role `member` only). */
export interface MemberAddFrame {
  t: 'member.add';
  id: number;
  conv: string;
  users: string[];
  role?: 'member' | 'admin';
}

export interface MemberRemoveFrame {
  t: 'member.remove';
  id: number;
  conv: string;
  user: string;
}

export interface MemberRoleFrame {
  t: 'member.role';
  id: number;
  conv: string;
  user: string;
  role: Role;
}

/** Leave a group, or unsubscribe from a channel. */
export interface ConvLeaveFrame {
  t: 'conv.leave';
  id: number;
  conv: string;
}

/** Subscribe to a channel (any authenticated user). */
export interface ConvJoinFrame {
  t: 'conv.join';
  id: number;
  conv: string;
}

/** Change a group's or channel's name and/or avatar (a media id). */
export interface ConvMetaFrame {
  t: 'conv.meta';
  id: number;
  conv: string;
  name?: string;
  avatar?: string;
}

/** A page of members, ordered by user id, after `after`. Answered by `members.page`. */
export interface MembersFrame {
  t: 'members';
  id: number;
  conv: string;
  after?: string;
  limit: number;
}

/** Per-member delivered/read state of a group at `seq`. Answered by `receipts.state`. */
export interface ReceiptsFrame {
  t: 'receipts';
  id: number;
  conv: string;
  seq: number;
}

export type ClientFrame =
  | SendFrame
  | DackFrame
  | ReadFrame
  | SyncFrame
  | HistoryFrame
  | PingFrame
  | PresenceSubFrame
  | PresenceUnsubFrame
  | TypingFrame
  | ConvCreateFrame
  | MemberAddFrame
  | MemberRemoveFrame
  | MemberRoleFrame
  | ConvLeaveFrame
  | ConvJoinFrame
  | ConvMetaFrame
  | MembersFrame
  | ReceiptsFrame;
/** Client frames answered by `conv.ok` (or `error`). */
export type ConvOpFrame = ConvCreateFrame | MemberAddFrame | MemberRemoveFrame | MemberRoleFrame | ConvLeaveFrame | ConvJoinFrame | ConvMetaFrame;
export type ClientFrameType = ClientFrame['t'];
export type ClientFrameOf<K extends ClientFrameType> = Extract<ClientFrame, { t: K }>;

// ---- server -> client ----------------------------------------------------------------------------

export interface HelloLimits {
  maxFrameBytes: number;
  maxBodyBytes: number;
  framesPerSecond: number;
  idleTimeoutS: number;
  maxInflightRequests: number;
}

/** First frame of every session, sent once authentication succeeded. */
export interface HelloFrame {
  t: 'hello';
  v: number;
  user: string;
  device: string;
  /** Id of the node serving the connection (for support and logs). */
  node: string;
  limits: HelloLimits;
}

/** The send was durably stored (one tick). `dup` when it was a retry of an earlier send. */
export interface SentFrame {
  t: 'sent';
  id: number;
  conv: string;
  seq: number;
  mid: string;
  dup: boolean;
  /** Server time of the original send, ms since the epoch. */
  ts: number;
}

/** A stored message as it appears in `msg`, `sync.batch` and `history.page`. */
export interface MessageEntry {
  seq: number;
  mid: string;
  /** Sender user and device. */
  from: string;
  fdev: string;
  body: Uint8Array;
  ts: number;
  /** The sender's client message id; present only when the receiving user is the sender. */
  cmid?: string;
  /** A membership/metadata event (groups, channels): `from` made it, `fdev` is `~`, `body` empty. */
  sys?: SysEvent;
  /** Media ids the message refers to. */
  media?: string[];
}

/** A live message, to every member device except the sending device. */
export interface MsgFrame extends MessageEntry {
  t: 'msg';
  conv: string;
  kind: ConversationKind;
}

/** `user` (on `device`, for delivered) has received or read `conv` up to `seq` (cumulative). */
export interface ReceiptFrame {
  t: 'receipt';
  conv: string;
  kind: ReceiptKind;
  user: string;
  device?: string;
  seq: number;
  /** With `user: '*'`: every member of the group has received or read up to `seq`. */
  all?: true;
}

/** Messages of one conversation after the device's cursor, ascending. */
export interface SyncBatchFrame {
  t: 'sync.batch';
  id: number;
  conv: string;
  kind: ConversationKind;
  msgs: MessageEntry[];
  /** Head of the conversation when this round started. */
  head: number;
  /** True when messages after the cursor were deleted by retention; they start at `retainedFrom`. */
  expired?: boolean;
  retainedFrom?: number;
  /**
   * The user's join floor in this group, when the device's cursor was below it: seqs before `from`
   * are not the user's to see (not a gap); the batch starts at `from` (section 3.7).
   */
  from?: number;
}

/** End of one sync round. When `more` is false the device holds everything up to `heads`. */
export interface SyncedFrame {
  t: 'synced';
  id: number;
  /** Every conversation the user belongs to -> its head when the round started. */
  heads: Record<string, number>;
  /** The user's read cursors (conv -> seq), so every device shows the same unread state. */
  reads: Record<string, number>;
  /** True when some conversation has messages beyond what this round sent: sync again. */
  more: boolean;
  /**
   * Receipt state a device missed while offline: for each direct conversation this round sent
   * messages of, the other user's highest delivered and read seqs (added by the actors helper).
   */
  peers?: Record<string, PeerReceipts>;
  /**
   * Unread badges: conv -> head minus the user's read cursor, for the conversations where that is
   * above 0 (absent ones have nothing unread). Counted from seqs alone (no message is read), so the
   * user's own messages and membership events after the read cursor count too; clients move the read
   * cursor past their own sends. The same count as the push badge. Always sent by this server.
   */
  unread?: Record<string, number>;
  /** Sum of `unread` (the app badge). */
  unreadTotal?: number;
  /** Groups of the round whose join floor is above 1: conv -> floor (section 3.7). */
  from?: Record<string, number>;
  /**
   * Conversations the user was removed from or left, that this device's cursor had not passed yet:
   * conv -> seq of that remove/leave event (also its `heads` entry). Once the device's cursor is at
   * or past it, the conversation no longer appears in sync (section 3.7).
   */
  left?: Record<string, number>;
}

/**
 * The device's one-time prekeys ran low (fewer than `threshold` left, `remaining` now) after another
 * device fetched its bundle: upload more with PUT /keys. Best effort; `low: true` in the /keys
 * answers says the same.
 */
export interface KeysLowFrame {
  t: 'keys.low';
  remaining: number;
  threshold: number;
}

/** The other user of a direct conversation: delivered (on any of their devices) and read up to. */
export interface PeerReceipts {
  user: string;
  delivered: number;
  read: number;
}

export interface HistoryPageFrame {
  t: 'history.page';
  id: number;
  conv: string;
  /** Descending seq. */
  msgs: MessageEntry[];
  /** `before` for the next older page, or null when there is nothing older. */
  next: number | null;
  /** True when older messages existed but were deleted by retention. */
  expired: boolean;
  /** The page stopped at the user's join floor in this group: nothing below `from` (section 3.7). */
  from?: number;
}

export interface PongFrame {
  t: 'pong';
  id: number;
}

/** A user's presence: online now, and last seen (server ms; null when never seen). */
export interface PresenceEntry {
  user: string;
  online: boolean;
  lastSeen: number | null;
}

/** Answer to `presence.sub`: the current presence of the users it named (in request order). */
export interface PresenceStateFrame {
  t: 'presence.state';
  id: number;
  users: PresenceEntry[];
}

/** A watched user came online or went offline (`lastSeen` is the server time of the change). */
export interface PresenceEventFrame extends PresenceEntry {
  t: 'presence';
}

/** Another member's device is typing (or paused) in a watched conversation. */
export interface TypingEventFrame {
  t: 'typing.event';
  conv: string;
  user: string;
  device: string;
  state: TypingState;
}

/** A conversation operation succeeded. `seq` is its event's seq in the log, 0 when nothing was written. */
export interface ConvOkFrame {
  t: 'conv.ok';
  id: number;
  conv: string;
  seq: number;
}

export interface MemberEntry {
  user: string;
  role: Role;
  /** When the user joined (server ms). */
  joined: number;
}

export interface MembersPageFrame {
  t: 'members.page';
  id: number;
  conv: string;
  members: MemberEntry[];
  /** `after` for the next page, or null when this was the last. */
  next: string | null;
}

/** Who of a group's members received and read `seq`, and up to where every member did. */
export interface ReceiptsStateFrame {
  t: 'receipts.state';
  id: number;
  conv: string;
  seq: number;
  delivered: string[];
  read: string[];
  deliveredAll: number;
  readAll: number;
}

export interface ErrorFrame {
  t: 'error';
  /** The request id this answers, when the failed frame had one. */
  id?: number;
  /** One of ERROR_CODES when sent by this server version; clients must tolerate unknown codes. */
  code: string;
  msg: string;
  retry: boolean;
  /** For invalid_field: the offending field (dotted path, e.g. `cursors.g:abc`). */
  field?: string;
}

export type ServerFrame =
  | HelloFrame
  | SentFrame
  | MsgFrame
  | ReceiptFrame
  | SyncBatchFrame
  | SyncedFrame
  | HistoryPageFrame
  | PongFrame
  | PresenceStateFrame
  | PresenceEventFrame
  | TypingEventFrame
  | ConvOkFrame
  | MembersPageFrame
  | ReceiptsStateFrame
  | KeysLowFrame
  | ErrorFrame;
export type ServerFrameType = ServerFrame['t'];
export type ServerFrameOf<K extends ServerFrameType> = Extract<ServerFrame, { t: K }>;

/** Builds an error frame with `retry` taken from the code table. */
export function errorFrame(code: ErrorCode, msg: string, id?: number, field?: string): ErrorFrame {
  const frame: ErrorFrame = { t: 'error', code, msg, retry: ERROR_CODES[code].retry };
  if (id !== undefined) frame.id = id;
  if (field !== undefined) frame.field = field;
  return frame;
}

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
