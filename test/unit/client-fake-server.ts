/**
 * A small in-process ticks server for the SDK tests (not a test file itself): speaks protocol v1
 * through src/protocol's codec over a real `ws` WebSocketServer on 127.0.0.1, with a naive model of
 * conversations (dense seqs, idempotent sends by cmid, sync paging, history pages). Tests steer it
 * with `intercept` (handle a frame yourself) and `onConnect` (refuse or close a connection).
 *
 * Tokens are fake: `<user>.<device>.<anything>`, in `Authorization: Bearer` or `?token=`.
 */
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ClientFrame, HelloLimits, MessageEntry, ServerFrame } from '../../src/protocol/client-frames.js';
import { decodeClientFrame, encodeServerFrame } from '../../src/protocol/codec.js';
import { directConversationId, newMessageId } from '../../src/protocol/ids.js';

export interface FakeConn {
  index: number;
  ws: WebSocket;
  url: string;
  authorization: string | undefined;
  token: string;
  user: string;
  device: string;
}

export class FakeServer {
  readonly conns: FakeConn[] = [];
  readonly frames: Array<{ conn: number; frame: ClientFrame }> = [];
  readonly logs = new Map<string, MessageEntry[]>();
  readonly cmids = new Map<string, { conv: string; seq: number }>();
  /** Stored delivered cursors, per `${device}|${conv}`. */
  readonly dacks = new Map<string, number>();
  limits: HelloLimits = { maxFrameBytes: 65536, maxBodyBytes: 49152, framesPerSecond: 1000, idleTimeoutS: 60, maxInflightRequests: 64 };
  /** Handle a frame yourself: return true to skip the default behaviour. */
  intercept: (frame: ClientFrame, conn: FakeConn) => boolean = () => false;
  /** Decide what happens at connect: return false to send no hello (the test closes or stalls). */
  onConnect: (conn: FakeConn) => boolean = () => true;
  /** Connections (by index) that look like a frozen node: see freeze(). */
  readonly frozen = new Set<number>();

  private constructor(private readonly wss: WebSocketServer) {
    wss.on('connection', (ws, req) => {
      const authorization = req.headers.authorization;
      const url = req.url ?? '';
      const token = authorization?.replace(/^Bearer /, '') ?? new URL(url, 'http://x').searchParams.get('token') ?? '';
      const [user = '', device = ''] = token.split('.');
      const conn: FakeConn = { index: this.conns.length, ws, url, authorization, token, user, device };
      this.conns.push(conn);
      ws.on('message', (data: Buffer) => {
        const decoded = decodeClientFrame(new Uint8Array(data), this.limits);
        if (!decoded.ok) throw new Error(`fake server got a bad frame: ${decoded.code} ${decoded.msg}`);
        this.frames.push({ conn: conn.index, frame: decoded.frame });
        if (this.frozen.has(conn.index)) return;
        if (!this.intercept(decoded.frame, conn)) this.handle(decoded.frame, conn);
      });
      if (this.onConnect(conn)) this.push(conn, { t: 'hello', v: 1, user, device, node: 'fake', limits: this.limits });
    });
  }

  static async start(): Promise<FakeServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    return new FakeServer(wss);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  framesOf<T extends ClientFrame['t']>(type: T): Array<Extract<ClientFrame, { t: T }>> {
    return this.frames.filter((f) => f.frame.t === type).map((f) => f.frame as Extract<ClientFrame, { t: T }>);
  }

  /**
   * Makes a connection behave like a SIGSTOPped node or a half-open path: the socket stays open,
   * frames from the client are recorded in `frames` but never handled, and nothing is sent to it.
   */
  freeze(conn: FakeConn): void {
    this.frozen.add(conn.index);
  }

  push(conn: FakeConn, frame: ServerFrame): void {
    if (this.frozen.has(conn.index)) return;
    conn.ws.send(encodeServerFrame(frame));
  }

  /** Stores a message (no delivery); returns its entry. */
  append(conv: string, from: string, fdev: string, text: string, cmid?: string): MessageEntry {
    let log = this.logs.get(conv);
    if (log === undefined) this.logs.set(conv, (log = []));
    const entry: MessageEntry = { seq: log.length + 1, mid: newMessageId(), from, fdev, body: new TextEncoder().encode(text), ts: Date.now() };
    if (cmid !== undefined) entry.cmid = cmid;
    log.push(entry);
    return entry;
  }

  /** Sends a stored message live. */
  deliver(conn: FakeConn, conv: string, seq: number): void {
    const entry = this.logs.get(conv)![seq - 1]!;
    this.push(conn, { t: 'msg', conv, kind: conv.startsWith('d:') ? 'direct' : 'group', ...entry });
  }

  /** The protocol's default answers. */
  handle(frame: ClientFrame, conn: FakeConn): void {
    switch (frame.t) {
      case 'send': {
        const known = this.cmids.get(frame.cmid);
        const conv = known?.conv ?? frame.conv ?? directConversationId(conn.user, frame.to!);
        const entry = known !== undefined ? this.logs.get(conv)![known.seq - 1]! : this.append(conv, conn.user, conn.device, '', frame.cmid);
        if (known === undefined) {
          entry.body = frame.body;
          this.cmids.set(frame.cmid, { conv, seq: entry.seq });
        }
        return this.push(conn, { t: 'sent', id: frame.id, conv, seq: entry.seq, mid: entry.mid, dup: known !== undefined, ts: entry.ts });
      }
      case 'sync': {
        const limit = frame.limit ?? 100;
        const heads: Record<string, number> = {};
        let more = false;
        for (const [conv, log] of this.logs) {
          heads[conv] = log.length;
          const cursor = frame.cursors?.[conv] ?? this.dacks.get(`${conn.device}|${conv}`) ?? 0;
          if (log.length <= cursor) continue;
          const msgs = log.slice(cursor, cursor + limit);
          if (cursor + limit < log.length) more = true;
          this.push(conn, { t: 'sync.batch', id: frame.id, conv, kind: conv.startsWith('d:') ? 'direct' : 'group', msgs, head: log.length });
        }
        // Nothing is ever read here: every message counts as unread (head minus a read cursor of 0).
        const unread = Object.fromEntries(Object.entries(heads).filter(([, head]) => head > 0));
        const unreadTotal = Object.values(unread).reduce((a, b) => a + b, 0);
        return this.push(conn, { t: 'synced', id: frame.id, heads, reads: {}, more, unread, unreadTotal });
      }
      case 'history': {
        const log = this.logs.get(frame.conv) ?? [];
        const before = frame.before ?? log.length + 1;
        const msgs = log.slice(Math.max(0, before - 1 - frame.limit), before - 1).reverse();
        const lowest = msgs.at(-1)?.seq ?? 1;
        return this.push(conn, { t: 'history.page', id: frame.id, conv: frame.conv, msgs, next: lowest > 1 ? lowest : null, expired: false });
      }
      case 'dack': {
        const key = `${conn.device}|${frame.conv}`;
        this.dacks.set(key, Math.max(this.dacks.get(key) ?? 0, frame.seq));
        return;
      }
      case 'read':
        return;
      case 'ping':
        return this.push(conn, { t: 'pong', id: frame.id });
    }
  }
}

/** Polls until `check` holds (3 s at most). */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export const text = (m: { body: Uint8Array }): string => new TextDecoder().decode(m.body);
