import type { SentFrame } from '../protocol/client-frames.js';
import type { SendRequest, Session } from './session.js';
import { fullJitterDelayMs, type BackoffOptions, type Clock, type TimerHandle } from './timing.js';
import { ClientError, CLOSED, DISCONNECTED, type SendResult } from './types.js';

/**
 * The outbox (docs/PROTOCOL.md 3.1): every send is kept under its client message id (cmid) until
 * `sent` arrives, and retried under the same cmid after a reconnect or a retryable error, so the
 * server's idempotency turns retries into `sent {dup: true}` with the original seq, never into a
 * second message. A non-retryable error settles the entry as failed.
 *
 * Order: entries go out in submission order, pipelined up to the connection's in-flight limit. A
 * message that is retried after an error can be stored after messages sent later; the server's seq
 * is the order every device shows.
 */

export interface OutboxRecord {
  cmid: string;
  /** Exactly one of `to` (a user: the direct conversation) and `conv`. */
  to?: string;
  conv?: string;
  body: Uint8Array;
  /** Media ids the message refers to (uploaded first; see docs/HTTP.md). */
  media?: string[];
  createdAtMs: number;
}

/**
 * Where unsent messages live. The default keeps them in memory (lost with the process); an app that
 * must survive restarts implements this over IndexedDB, SQLite or a file.
 *
 * Contract: `put` is durable when its promise resolves (a send is transmitted only after that);
 * `load` returns every record put and not deleted, in put order; `delete` of an unknown cmid is a
 * no-op. Records loaded at start are sent again under their cmid: results come as `sent` and
 * `send-failed` events, since the promises of the earlier process are gone.
 */
export interface OutboxStorage {
  load(): Promise<OutboxRecord[]>;
  put(record: OutboxRecord): Promise<void>;
  delete(cmid: string): Promise<void>;
}

export class MemoryOutboxStorage implements OutboxStorage {
  readonly #records = new Map<string, OutboxRecord>();
  async load(): Promise<OutboxRecord[]> {
    return [...this.#records.values()];
  }
  async put(record: OutboxRecord): Promise<void> {
    this.#records.set(record.cmid, record);
  }
  async delete(cmid: string): Promise<void> {
    this.#records.delete(cmid);
  }
}

/** A fresh client message id: 128 random bits as 32 hex characters (getRandomValues works everywhere). */
export function newClientMessageId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

function closedError(): ClientError {
  return new ClientError(CLOSED, 'client closed before the message was sent', { retryable: false });
}

export interface OutboxDeps {
  storage: OutboxStorage;
  clock: Clock;
  random: () => number;
  backoff: BackoffOptions;
  /** The open session, or undefined while disconnected. */
  session(): Session | undefined;
  /** Most sends in flight at once (the connection's limit minus room for sync, history and ping). */
  maxInflight(): number;
  /** Settled as stored: `answer` is the `sent` frame, or undefined when settled by `settle`. */
  sent(cmid: string, result: SendResult, answer: SentFrame | undefined): void;
  failed(cmid: string, err: ClientError): void;
}

interface Waiter {
  resolve(result: SendResult): void;
  reject(err: ClientError): void;
}

interface Entry {
  record: OutboxRecord;
  /** The session the entry is in flight on; undefined when queued or backing off. */
  session: Session | undefined;
  attempt: number;
  timer: TimerHandle | undefined;
  /** Answered `shutting_down` on this session: wait for the next one. */
  parked: Session | undefined;
  waiters: Waiter[];
}

export class Outbox {
  readonly #d: OutboxDeps;
  readonly #entries = new Map<string, Entry>(); // Map order is submission order
  #inflight = 0;
  #closed = false;

  constructor(deps: OutboxDeps) {
    this.#d = deps;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(cmid: string): boolean {
    return this.#entries.has(cmid);
  }

  /** cmids not yet settled, in submission order. */
  pending(): string[] {
    return [...this.#entries.keys()];
  }

  /** Adds the records a storage kept from an earlier run. */
  async restore(): Promise<void> {
    for (const record of await this.#d.storage.load()) {
      if (!this.#entries.has(record.cmid)) this.#entries.set(record.cmid, { record, session: undefined, attempt: 0, timer: undefined, parked: undefined, waiters: [] });
    }
    this.flush();
  }

  /** Stores the record, then sends it. Submitting a cmid already pending joins that send. */
  async submit(record: OutboxRecord): Promise<SendResult> {
    if (this.#closed) throw closedError();
    const existing = this.#entries.get(record.cmid);
    if (existing === undefined) await this.#d.storage.put(record);
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(closedError()); // closed while the record was being stored
      let entry = this.#entries.get(record.cmid);
      if (entry === undefined) {
        entry = { record, session: undefined, attempt: 0, timer: undefined, parked: undefined, waiters: [] };
        this.#entries.set(record.cmid, entry);
      }
      entry.waiters.push({ resolve, reject });
      this.flush();
    });
  }

  /** Sends queued entries while the session has room. Called on open and whenever room frees up. */
  flush(): void {
    const session = this.#d.session();
    if (session === undefined) return;
    for (const entry of this.#entries.values()) {
      if (this.#inflight >= this.#d.maxInflight()) return;
      if (entry.session === undefined && entry.timer === undefined && entry.parked !== session) this.#transmit(entry, session);
    }
  }

  /** The session ended: everything in flight is queued again, to go out after the reconnect. */
  onDown(): void {
    for (const entry of this.#entries.values()) {
      entry.session = undefined;
      if (entry.timer !== undefined) this.#d.clock.clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    this.#inflight = 0;
  }

  /**
   * The message was seen stored (our own message in a sync batch, with its cmid): settle the entry
   * as if `sent {dup: true}` had arrived. A `sent` still in flight is ignored when it comes.
   */
  settle(cmid: string, result: SendResult): void {
    const entry = this.#entries.get(cmid);
    if (entry === undefined) return;
    this.#remove(entry);
    for (const w of entry.waiters) w.resolve(result);
    this.#d.sent(cmid, result, undefined);
  }

  /** The client closed: pending promises reject; records stay in storage for the next start. */
  close(): void {
    this.#closed = true;
    const err = closedError();
    this.onDown();
    for (const entry of this.#entries.values()) for (const w of entry.waiters.splice(0)) w.reject(err);
  }

  #transmit(entry: Entry, session: Session): void {
    entry.session = session;
    this.#inflight++;
    const r = entry.record;
    const frame: SendRequest = r.to !== undefined ? { t: 'send', to: r.to, cmid: r.cmid, body: r.body } : { t: 'send', conv: r.conv!, cmid: r.cmid, body: r.body };
    if (r.media !== undefined && r.media.length > 0) frame.media = r.media;
    session.request(frame).then(
      (sent) => this.#answered(entry, session, sent, undefined),
      (err: ClientError) => this.#answered(entry, session, undefined, err),
    );
  }

  #answered(entry: Entry, session: Session, sent: SentFrame | undefined, err: ClientError | undefined): void {
    // Stale: settled meanwhile (settle, or a non-retryable answer) or requeued by onDown.
    if (this.#entries.get(entry.record.cmid) !== entry || entry.session !== session) return;
    entry.session = undefined;
    this.#inflight--;
    if (sent !== undefined) {
      this.#remove(entry);
      const result: SendResult = { conv: sent.conv, seq: sent.seq, mid: sent.mid, dup: sent.dup, ts: sent.ts };
      for (const w of entry.waiters) w.resolve(result);
      this.#d.sent(entry.record.cmid, result, sent);
    } else if (err!.code === DISCONNECTED) {
      // Stays queued: the next session sends it.
    } else if (err!.code === 'shutting_down') {
      entry.parked = session; // the draining node closes with 4000 soon; the next node takes it
    } else if (err!.retryable) {
      const delayMs = fullJitterDelayMs(entry.attempt++, this.#d.backoff, this.#d.random);
      entry.timer = this.#d.clock.setTimeout(() => {
        entry.timer = undefined;
        this.flush();
      }, delayMs);
    } else {
      this.#remove(entry);
      for (const w of entry.waiters) w.reject(err!);
      this.#d.failed(entry.record.cmid, err!);
    }
    this.flush();
  }

  #remove(entry: Entry): void {
    this.#entries.delete(entry.record.cmid);
    if (entry.timer !== undefined) this.#d.clock.clearTimeout(entry.timer);
    if (entry.session !== undefined) this.#inflight--;
    entry.session = undefined;
    // A failed delete only means the record is sent again after a restart, answered `dup: true`.
    this.#d.storage.delete(entry.record.cmid).catch(() => undefined);
  }
}
