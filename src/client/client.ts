import type {
  ConversationKind,
  HelloFrame,
  MessageEntry,
  ReceiptKind,
  SentFrame,
  ServerFrame,
  SyncedFrame,
} from '../protocol/client-frames.js';
import type { MemberEntry, ReceiptsStateFrame, Role } from '../protocol/client-conv-frames.js';
import { CLIENT_MSG_ID_PATTERN, MAX_PAGE_LIMIT, MAX_SEND_MEDIA } from '../protocol/client-frames.js';
import { isConversationId, isMediaId, isUserId } from '../protocol/ids.js';
import { AckBatcher } from './acks.js';
import { CatchUp } from './catch-up.js';
import { Connection, type TokenSource } from './connection.js';
import { TypedEmitter } from './emitter.js';
import { MemoryOutboxStorage, newClientMessageId, Outbox, type OutboxRecord, type OutboxStorage } from './outbox.js';
import { ReceiptBook, type ConversationReceipts } from './receipts.js';
import { Receiver, toMessage } from './receiver.js';
import { DEFAULT_BACKOFF, systemClock, type BackoffOptions, type Clock } from './timing.js';
import type { ConvOpRequest } from './session.js';
import type { TransportOptions } from './transport.js';
import { ClientError, type ClientEvents, type ClientState, type Message, type MessageSource, type SendResult } from './types.js';

export interface ClientOptions extends TransportOptions {
  /** The server's ws:// or wss:// origin, e.g. `ws://127.0.0.1:8080` (a trailing `/ws` is fine). */
  url: string;
  /** A JWT, or a provider called before every connection attempt (so an expired token is refreshed). */
  token: TokenSource;
  /** Where unsent messages wait; default in memory. */
  outboxStorage?: OutboxStorage;
  /** Per-conversation cursors an app persisted (`cursors()` of an earlier run): sync is exact from them. */
  cursors?: Record<string, number>;
  clock?: Clock;
  /** Random numbers in [0, 1) for jitter; default Math.random. */
  random?: () => number;
  /** Reconnect and retry backoff; default 0.5 s doubling to 30 s. */
  backoff?: Partial<BackoffOptions>;
  /** A session up this long after hello resets the reconnect backoff. Default 10 s. */
  stableAfterMs?: number;
  /** Added to the backoff after close 4003 (rate limited). Default 3 s. */
  rateLimitedFloorMs?: number;
  /** Reconnect when no hello arrived this long after opening the socket. Default 10 s. */
  helloTimeoutMs?: number;
  /** Reconnect when a keep-alive ping got no answer this long. Default 10 s. */
  pingTimeoutMs?: number;
  /**
   * Liveness: while requests are outstanding (sends awaiting `sent`, sync, history), ping when no
   * frame at all arrived from the server this long, so a frozen node or a half-open connection is
   * noticed while the client keeps sending. Default 5 s; 0 disables.
   */
  responseTimeoutMs?: number;
  /**
   * Liveness: after that ping, close and reconnect (state `reconnecting`, code 1006, reason
   * `unresponsive`) when no frame arrives this long; the outbox resends under the same cmids.
   * Default 3 s.
   */
  pongTimeoutMs?: number;
  /** `sync.limit`. Default 100. */
  syncLimit?: number;
  /** Wait before repairing a gap (a redelivery may fill it). Default 500 ms. */
  gapRepairDelayMs?: number;
  /** Batching window of dack and read frames. Default 100 ms. */
  ackDelayMs?: number;
  /** Message ids remembered for dedupe. Default 20,000. */
  recentIds?: number;
}

export type SendTarget = { to: string; conv?: undefined } | { conv: string; to?: undefined };

export interface HistoryPage {
  conv: string;
  /** Newest first. */
  messages: Message[];
  /** `before` for the next older page; null when there is nothing older. */
  next: number | null;
  /** Older messages existed but were deleted by retention. */
  expired: boolean;
  /** Groups: the page stopped at this user's join floor; nothing below is its to see. */
  from?: number;
}

/** A group/channel operation's result: the conversation and its event's seq (0: nothing written). */
export interface ConvResult {
  conv: string;
  seq: number;
}

export interface CreateOptions {
  name?: string;
  /** A media id (upload the image first). */
  avatar?: string;
  /** Initial members besides the creator (at most 256). */
  members?: string[];
  /** Idempotency key of the creation; default a fresh one. Retrying with it returns the same conversation. */
  cmid?: string;
}

export interface MembersPage {
  conv: string;
  members: MemberEntry[];
  /** `after` for the next page; null on the last page. */
  next: string | null;
}

/** Who of a group's members received and read a seq, and up to where all of them did. */
export type ReceiptsState = Omit<ReceiptsStateFrame, 't' | 'id'>;

/** Attempts of a group/channel request on retryable errors (they are idempotent). */
const CONV_REQUEST_ATTEMPTS = 5;

// Room left beside the outbox's sends for sync, history and ping within maxInflightRequests.
const RESERVED_REQUESTS = 4;

/**
 * A ticks client for Node and browsers (docs/PROTOCOL.md). Connects and reconnects by itself, keeps
 * unsent messages in an outbox until they are stored, emits each received message once and in seq
 * order per conversation, acks what it holds, and catches up exactly after every reconnect.
 *
 * Events (see ClientEvents): `message`, `sent`, `send-failed`, `receipt`, `synced` (caught up),
 * `gap-expired`, `error`, `state`, `closed` (terminal), `hello`.
 */
export class TicksClient extends TypedEmitter<ClientEvents> {
  readonly #conn: Connection;
  readonly #receiver: Receiver;
  readonly #receipts = new ReceiptBook();
  /** Highest "all" receipt seen per (kind, conversation). */
  readonly #allSeen = new Map<string, number>();
  readonly #outbox: Outbox;
  readonly #catchUp: CatchUp;
  readonly #acks: AckBatcher;
  readonly #clock: Clock;
  #hello: HelloFrame | undefined;
  #started = false;
  /** `synced.left` of the rounds of the catch-up under way. */
  #left: Record<string, number> = {};

  constructor(o: ClientOptions) {
    super();
    const clock = o.clock ?? systemClock;
    this.#clock = clock;
    const random = o.random ?? Math.random;
    const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...o.backoff };
    this.#receiver = new Receiver(
      {
        deliver: (m) => this.emit('message', m),
        advanced: (conv) => this.#acks.dack(conv),
        gap: (conv) => this.#catchUp.scheduleRepair(conv),
        unknown: () => this.#catchUp.requestSync(),
        expired: (event) => this.emit('gap-expired', event),
      },
      { recentIds: o.recentIds ?? 20_000, cursors: o.cursors },
    );
    this.#conn = new Connection(
      {
        url: o.url,
        token: o.token,
        transport: { webSocketFactory: o.webSocketFactory, webSocketImpl: o.webSocketImpl },
        clock,
        random,
        backoff,
        stableAfterMs: o.stableAfterMs ?? 10_000,
        rateLimitedFloorMs: o.rateLimitedFloorMs ?? 3_000,
        helloTimeoutMs: o.helloTimeoutMs ?? 10_000,
        pingTimeoutMs: o.pingTimeoutMs ?? 10_000,
        responseTimeoutMs: o.responseTimeoutMs ?? 5_000,
        pongTimeoutMs: o.pongTimeoutMs ?? 3_000,
      },
      {
        open: (hello, session) => {
          this.#hello = hello;
          this.emit('hello', hello);
          this.#catchUp.onOpen(session);
          this.#outbox.flush();
          this.#acks.onOpen();
        },
        frame: (frame) => this.#onFrame(frame),
        down: () => {
          this.#outbox.onDown();
          this.#catchUp.onDown();
          this.#acks.onDown();
        },
        state: (event) => this.emit('state', event),
        closed: (event) => {
          this.#outbox.close();
          this.#acks.close();
          this.emit('closed', event);
        },
        error: (error) => this.emit('error', { error }),
      },
    );
    this.#outbox = new Outbox({
      storage: o.outboxStorage ?? new MemoryOutboxStorage(),
      clock,
      random,
      backoff,
      session: () => this.#conn.session,
      maxInflight: () => Math.max(1, (this.#hello?.limits.maxInflightRequests ?? 64) - RESERVED_REQUESTS),
      sent: (cmid, result, answer) => this.#onSent(cmid, result, answer),
      failed: (cmid, error) => this.emit('send-failed', { cmid, error }),
    });
    this.#catchUp = new CatchUp({
      receiver: this.#receiver,
      clock,
      random,
      backoff,
      syncLimit: Math.min(Math.max(o.syncLimit ?? 100, 1), MAX_PAGE_LIMIT),
      gapRepairDelayMs: o.gapRepairDelayMs ?? 500,
      session: () => this.#conn.session,
      feed: (conv, kind, entry, source) => this.#feed(conv, kind, entry, source),
      synced: (frame, rounds, final) => this.#onSynced(frame, rounds, final),
      error: (error, conv) => this.emit('error', conv === undefined ? { error } : { error, conv }),
    });
    this.#acks = new AckBatcher({
      clock,
      delayMs: o.ackDelayMs ?? 100,
      have: (conv) => this.#receiver.peek(conv)?.have,
      post: (frame) => this.#conn.post(frame),
    });
  }

  get state(): ClientState {
    return this.#conn.state;
  }
  /** The last hello: user, device, node and this connection's limits. */
  get hello(): HelloFrame | undefined {
    return this.#hello;
  }
  /** True after the last (re)connect's sync said the device is caught up. */
  get caughtUp(): boolean {
    return this.#catchUp.caughtUp;
  }

  /** Starts connecting (and reconnecting); resolves at the first hello, rejects on a terminal close. */
  async connect(): Promise<HelloFrame> {
    if (!this.#started) {
      this.#started = true;
      await this.#outbox.restore();
      this.#conn.start();
    }
    await this.#conn.whenOpen();
    return this.#hello!;
  }

  /** Closes for good. Unsent messages stay in the outbox storage; their promises reject. */
  close(): void {
    this.#acks.flush();
    this.#conn.stop();
  }

  /**
   * Sends `body` to a user (`{to}`, the direct conversation) or a conversation (`{conv}`). Resolves
   * once the message is durably stored. Retried under the same cmid across reconnects and retryable
   * errors; rejects with the server's error code on a non-retryable one. Works while disconnected:
   * the message waits in the outbox. `opts.cmid` lets an app choose the idempotency key;
   * `opts.media` names uploaded media the message refers to (ids from `POST /media`).
   */
  async send(target: SendTarget, body: Uint8Array, opts: { cmid?: string; media?: string[] } = {}): Promise<SendResult> {
    const invalid = (field: string, msg: string) => new ClientError('invalid_field', msg, { retryable: false, field });
    if (target.to !== undefined ? !isUserId(target.to) || target.conv !== undefined : !isConversationId(target.conv)) {
      throw invalid(target.to !== undefined ? 'to' : 'conv', 'send needs exactly one of a valid `to` user id or `conv` id');
    }
    if (!(body instanceof Uint8Array)) throw invalid('body', 'body must be a Uint8Array');
    const maxBody = this.#hello?.limits.maxBodyBytes;
    if (maxBody !== undefined && body.byteLength > maxBody) {
      throw new ClientError('body_too_large', `body of ${body.byteLength} bytes exceeds ${maxBody}`, { retryable: false, field: 'body' });
    }
    const cmid = opts.cmid ?? newClientMessageId();
    if (!CLIENT_MSG_ID_PATTERN.test(cmid)) throw invalid('cmid', 'cmid must be 1 to 64 printable ASCII characters without space');
    const media = opts.media;
    if (media !== undefined) {
      if (!Array.isArray(media) || media.length > MAX_SEND_MEDIA) throw invalid('media', `media must be an array of at most ${MAX_SEND_MEDIA} media ids`);
      const bad = media.findIndex((m) => !isMediaId(m));
      if (bad >= 0) throw invalid(`media.${bad}`, 'expected a media id (64 lower-case hex digits)');
    }
    // A copy: a retry must send the bytes as they were, whatever the app does with its buffer.
    // Not body.slice(): for a Node Buffer that is a view of the same memory.
    const copy = Uint8Array.from(body);
    const record: OutboxRecord = target.to !== undefined ? { cmid, to: target.to, body: copy, createdAtMs: Date.now() } : { cmid, conv: target.conv, body: copy, createdAtMs: Date.now() };
    if (media !== undefined && media.length > 0) record.media = [...media];
    return this.#outbox.submit(record);
  }

  /** Marks `conv` read up to `seq` (cumulative; a lower seq than before is a no-op). */
  markRead(conv: string, seq: number): void {
    const have = this.#receiver.peek(conv)?.have;
    const upTo = have === undefined ? seq : Math.min(seq, have);
    if (upTo < 1 || !this.#acks.read(conv, upTo)) return;
    this.#receipts.apply(conv, 'read', this.#hello?.user ?? '', upTo, this.#hello?.user ?? '');
  }

  /** One page of older messages, newest first: seq below `before` (or the newest when absent). */
  async history(conv: string, before?: number, limit = 50): Promise<HistoryPage> {
    const session = await this.#conn.whenOpen();
    const frame = { t: 'history' as const, conv, limit: Math.min(Math.max(Math.floor(limit), 1), MAX_PAGE_LIMIT) };
    const page = await session.request(before === undefined ? frame : { ...frame, before });
    // Pages also feed the receive order: a page may hold messages this device has not seen yet.
    for (const entry of page.msgs) this.#feed(conv, undefined, entry, 'history');
    // Below the join floor is not a gap (PROTOCOL 3.2): the device's `have` may move up to it.
    if (page.from !== undefined && this.#receiver.peek(conv)?.have !== undefined) this.#receiver.setBase(conv, page.from - 1);
    const kind = this.#receiver.peek(conv)?.kind;
    const out: HistoryPage = { conv, messages: page.msgs.map((e) => toMessage(conv, kind, e, 'history')), next: page.next, expired: page.expired };
    if (page.from !== undefined) out.from = page.from;
    return out;
  }

  // ---- groups and channels (docs/PROTOCOL.md 3.7) -----------------------------------------------

  /** Creates a group; this user is its owner. Idempotent on `opts.cmid`. */
  createGroup(opts: CreateOptions = {}): Promise<ConvResult> {
    return this.#create('group', opts);
  }
  /** Creates a broadcast channel (only owners and admins post; anyone may join). */
  createChannel(opts: CreateOptions = {}): Promise<ConvResult> {
    return this.#create('channel', opts);
  }
  /** Adds users (owners may add admins; admins add members). Users already members are skipped. */
  addMembers(conv: string, users: string[], role?: 'member' | 'admin'): Promise<ConvResult> {
    return this.#convRequest(role === undefined ? { t: 'member.add', conv, users } : { t: 'member.add', conv, users, role });
  }
  removeMember(conv: string, user: string): Promise<ConvResult> {
    return this.#convRequest({ t: 'member.remove', conv, user });
  }
  setRole(conv: string, user: string, role: Role): Promise<ConvResult> {
    return this.#convRequest({ t: 'member.role', conv, user, role });
  }
  /** Leaves a group or unsubscribes from a channel. */
  leave(conv: string): Promise<ConvResult> {
    return this.#convRequest({ t: 'conv.leave', conv });
  }
  /** Subscribes to a channel. */
  join(conv: string): Promise<ConvResult> {
    return this.#convRequest({ t: 'conv.join', conv });
  }
  setMeta(conv: string, meta: { name?: string; avatar?: string }): Promise<ConvResult> {
    return this.#convRequest({ t: 'conv.meta', conv, ...(meta.name === undefined ? {} : { name: meta.name }), ...(meta.avatar === undefined ? {} : { avatar: meta.avatar }) });
  }
  /** One page of members, ordered by user id. */
  async members(conv: string, opts: { after?: string; limit?: number } = {}): Promise<MembersPage> {
    const limit = Math.min(Math.max(Math.floor(opts.limit ?? 100), 1), MAX_PAGE_LIMIT);
    const page = await this.#retrying(async () => (await this.#conn.whenOpen()).request(opts.after === undefined ? { t: 'members', conv, limit } : { t: 'members', conv, limit, after: opts.after }));
    return { conv, members: page.members, next: page.next };
  }
  /** Groups: who received and read `seq`, and up to where every member did. */
  async receiptsState(conv: string, seq: number): Promise<ReceiptsState> {
    const s = await this.#retrying(async () => (await this.#conn.whenOpen()).request({ t: 'receipts', conv, seq }));
    return { conv, seq: s.seq, delivered: s.delivered, read: s.read, deliveredAll: s.deliveredAll, readAll: s.readAll };
  }

  #create(kind: 'group' | 'channel', opts: CreateOptions): Promise<ConvResult> {
    const cmid = opts.cmid ?? newClientMessageId();
    if (!CLIENT_MSG_ID_PATTERN.test(cmid)) throw new ClientError('invalid_field', 'cmid must be 1 to 64 printable ASCII characters without space', { retryable: false, field: 'cmid' });
    return this.#convRequest({
      t: 'conv.create',
      cmid,
      kind,
      ...(opts.name === undefined ? {} : { name: opts.name }),
      ...(opts.avatar === undefined ? {} : { avatar: opts.avatar }),
      ...(opts.members === undefined ? {} : { members: opts.members }),
    });
  }

  async #convRequest(frame: ConvOpRequest): Promise<ConvResult> {
    const ok = await this.#retrying(async () => (await this.#conn.whenOpen()).request(frame));
    return { conv: ok.conv, seq: ok.seq };
  }

  /**
   * Runs a request again after a retryable error (the connection dropped, storage or the cluster
   * was briefly unavailable), with backoff: group/channel operations are idempotent (a repeated
   * add, remove or role change writes nothing; a repeated create has the same cmid).
   */
  async #retrying<T>(run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (err) {
        if (!(err instanceof ClientError) || !err.retryable || attempt >= CONV_REQUEST_ATTEMPTS) throw err;
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, 250 * 2 ** (attempt - 1)));
      }
    }
  }

  /** The highest seq this device holds contiguously in `conv` (undefined: not known yet). */
  cursor(conv: string): number | undefined {
    return this.#receiver.peek(conv)?.have;
  }
  /** Every known cursor: persist these and pass them as `cursors` next time for an exact sync. */
  cursors(): Record<string, number> {
    return this.#receiver.cursors();
  }
  /** How far the other users of `conv` have received and read. */
  receipts(conv: string): ConversationReceipts {
    return this.#receipts.peers(conv);
  }
  /** How far this user has read `conv` (on any device). */
  readCursor(conv: string): number {
    return Math.max(this.#receipts.ownRead(conv), this.#acks.readSeq(conv));
  }
  /** cmids of sends not yet stored, oldest first. */
  pendingSends(): string[] {
    return this.#outbox.pending();
  }

  #onFrame(frame: ServerFrame): void {
    switch (frame.t) {
      case 'msg':
        return this.#feed(frame.conv, frame.kind, frame, 'live');
      case 'receipt':
        // Groups' "delivered to all" / "read by all": not a peer's cursor.
        // Cumulative: one at or below the highest seen carries no news (a new owner node of the
        // conversation announces its level again).
        if (frame.all === true) {
          const key = `${frame.kind}\u0000${frame.conv}`;
          if (frame.seq <= (this.#allSeen.get(key) ?? 0)) return;
          this.#allSeen.set(key, frame.seq);
          return this.emit('receipt', { conv: frame.conv, kind: frame.kind, user: frame.user, seq: frame.seq, all: true, source: 'live' });
        }
        return this.#receipt(frame.conv, frame.kind, frame.user, frame.seq, 'live', frame.device);
      case 'keys.low':
        return this.emit('keys-low', { remaining: frame.remaining, threshold: frame.threshold });
      case 'error':
        // An error without a request id is about a dack or read (they have no id); a retryable one
        // means the frame was not processed.
        if (frame.id === undefined && frame.retry) this.#acks.resend();
        return this.emit('error', { error: new ClientError(frame.code, frame.msg, { retryable: frame.retry, field: frame.field }) });
      default:
        // Answers to requests of an ended session, or a second hello: nothing to do.
        return;
    }
  }

  #feed(conv: string, kind: ConversationKind | undefined, entry: MessageEntry, source: MessageSource): void {
    // Our own message, seen stored (a sync after a lost `sent`): settles the outbox entry. If this
    // process had it pending, the app learns of it through `sent`, not as a received message.
    const own = entry.cmid !== undefined && entry.fdev === this.#hello?.device && this.#outbox.has(entry.cmid);
    if (own) this.#outbox.settle(entry.cmid!, { conv, seq: entry.seq, mid: entry.mid, dup: true, ts: entry.ts });
    const message = own ? undefined : toMessage(conv, kind, entry, source);
    this.#receiver.accept(conv, { seq: entry.seq, mid: entry.mid, message }, kind);
  }

  #onSent(cmid: string, result: SendResult, answer: SentFrame | undefined): void {
    // The sending device gets no `msg` of its own message: `sent.seq` counts as received (PROTOCOL
    // 3.1). Settled without an answer, the message is being fed by the sync batch that showed it.
    if (answer !== undefined) this.#receiver.accept(answer.conv, { seq: answer.seq, mid: answer.mid, message: undefined });
    this.emit('sent', { cmid, ...result });
  }

  #receipt(conv: string, kind: ReceiptKind, user: string, seq: number, source: 'live' | 'sync', device?: string): void {
    if (!this.#receipts.apply(conv, kind, user, seq, this.#hello?.user)) return;
    this.emit('receipt', device === undefined ? { conv, kind, user, seq, source } : { conv, kind, user, device, seq, source });
  }

  #onSynced(frame: SyncedFrame, rounds: number, final: boolean): void {
    const me = this.#hello?.user ?? '';
    // A departure is reported by the rounds whose cursor was still below it: gather them.
    if (rounds === 1) this.#left = {};
    Object.assign(this.#left, frame.left ?? {});
    for (const [conv, seq] of Object.entries(frame.reads)) this.#receipt(conv, 'read', me, seq, 'sync');
    for (const [conv, peer] of Object.entries(frame.peers ?? {})) {
      this.#receipt(conv, 'delivered', peer.user, peer.delivered, 'sync');
      this.#receipt(conv, 'read', peer.user, peer.read, 'sync');
    }
    if (final) {
      const left = this.#left;
      this.#left = {};
      this.emit('synced', { heads: frame.heads, reads: frame.reads, unread: frame.unread ?? {}, unreadTotal: frame.unreadTotal ?? 0, rounds, from: frame.from ?? {}, left });
    }
  }
}
