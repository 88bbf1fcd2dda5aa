/**
 * A minimal WebSocket client over a raw `net` socket, for load generators that must consume
 * hundreds of thousands of server frames per second on one core (bench/fanout's receivers).
 *
 * Why not `ws`: its receiver allocates a Buffer (and emits an event) per frame, plus one per read;
 * at 2-3.6 µs per delivery the generator's core, not the server, was the limit. Here every read
 * lands in one buffer shared by all the sockets of the process (`net` `onread`: no allocation per
 * read), frames are parsed in place, and a message is handed to the caller as (buffer, start, end),
 * valid only during the call: no allocation per frame. Only a frame split across reads is copied.
 *
 * What it does: the RFC 6455 client handshake (Sec-WebSocket-Accept checked), masked client frames
 * (a real random key per frame, from a pool refilled in bulk), text/binary messages, continuation
 * frames (reassembled, rare), ping -> pong, the close handshake. No extensions (no
 * permessage-deflate is offered) and no UTF-8 validation: the ticks protocol is binary msgpack.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Messages larger than this close the socket (1009): a generator never expects them. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** One read buffer per process: a read's bytes are parsed before the next read reuses it. */
const READ_BUFFER_BYTES = 1024 * 1024;
let sharedRead: Buffer | null = null;

/** Reads and bytes received by every socket of the process (frames per read shows the batching). */
export const rawWsStats = { reads: 0, bytes: 0 };

/** Masking keys come from a pool refilled 4096 keys at a time (one getrandom per refill). */
const maskPool = Buffer.alloc(4 * 4096);
let maskAt = maskPool.length;

function nextMask(out: Buffer, at: number): void {
  if (maskAt >= maskPool.length) {
    randomFillSync(maskPool);
    maskAt = 0;
  }
  maskPool.copy(out, at, maskAt, maskAt + 4);
  maskAt += 4;
}

/**
 * Called once per complete message; `buf[start, end)` is the payload, valid during the call only.
 * `ws` is the socket (the first frames may arrive before `connect` has resolved).
 */
export type OnMessage = (buf: Buffer, start: number, end: number, ws: RawWebSocket) => void;

export interface RawWsOptions {
  /** ws://host:port/path */
  url: string;
  headers?: Record<string, string>;
  localAddress?: string;
  localPort?: number;
  /** Handshake deadline. */
  timeoutMs: number;
  /** Installed before the first frame is parsed (frames may arrive with the handshake's answer). */
  onMessage: OnMessage;
  onClose?: (code: number) => void;
}

export class RawWebSocket {
  /** Replaceable at any time, also from inside a message callback (later frames of the same read go to the new one). */
  onMessage: OnMessage = () => {};
  /** Once, when the socket is gone: the close code the server sent, 1006 when none. */
  onClose: (code: number) => void = () => {};
  private pending: Buffer | null = null;
  private fragments: Buffer[] | null = null;
  private closeSent = false;
  private closed = false;
  private closeCode = 1006;

  private constructor(private readonly socket: Socket) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens the socket and completes the handshake; rejects with `http <status>`, a socket error or `timeout`. */
  static connect(o: RawWsOptions): Promise<RawWebSocket> {
    const u = new URL(o.url);
    if (u.protocol !== 'ws:') throw new Error(`raw-ws speaks ws:// only, got ${o.url}`);
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    const read = (sharedRead ??= Buffer.allocUnsafe(READ_BUFFER_BYTES));
    return new Promise((resolve, reject) => {
      let ws: RawWebSocket | null = null;
      let head: Buffer | null = Buffer.alloc(0);
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error('timeout')), o.timeoutMs);
      const socket = netConnect({
        host: u.hostname,
        port: Number(u.port || 80),
        ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }),
        ...(o.localPort === undefined ? {} : { localPort: o.localPort }),
        onread: {
          buffer: read,
          callback: (n: number, buf: Uint8Array): boolean => {
            const chunk = (buf as Buffer).subarray(0, n);
            rawWsStats.reads++;
            rawWsStats.bytes += n;
            if (ws !== null) {
              ws.feed(chunk);
              return true;
            }
            // Handshake: the response head, then possibly the first frames in the same read.
            head = Buffer.concat([head!, chunk]);
            const endAt = head.indexOf('\r\n\r\n');
            if (endAt < 0) {
              if (head.length > 16 * 1024) fail(new Error('handshake response too long'));
              return true;
            }
            const lines = head.subarray(0, endAt).toString('latin1').split('\r\n');
            const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? '?';
            if (status !== '101') return fail(new Error(`http ${status}`)), false;
            const got = lines.find((l) => /^sec-websocket-accept:/i.test(l))?.slice('sec-websocket-accept:'.length).trim();
            if (got !== accept) return fail(new Error('bad Sec-WebSocket-Accept')), false;
            const rest = Buffer.from(head.subarray(endAt + 4));
            head = null;
            ws = new RawWebSocket(socket);
            ws.onMessage = o.onMessage;
            if (o.onClose) ws.onClose = o.onClose;
            settled = true;
            clearTimeout(timer);
            socket.on('close', () => ws!.gone());
            resolve(ws);
            if (rest.length > 0) ws.feed(rest);
            return true;
          },
        },
      });
      socket.setNoDelay(true);
      socket.on('error', (err) => fail(err));
      socket.on('close', () => fail(new Error('closed during handshake')));
      socket.once('connect', () => {
        const lines = [
          `GET ${u.pathname}${u.search} HTTP/1.1`,
          `Host: ${u.host}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${key}`,
          'Sec-WebSocket-Version: 13',
          ...Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
        ];
        socket.write(lines.join('\r\n') + '\r\n\r\n');
      });
    });
  }

  /** Sends one binary message (masked, as a client must). */
  send(payload: Uint8Array): void {
    if (this.closed || this.closeSent) return;
    this.socket.write(frame(0x2, payload));
  }

  /** The close handshake: resolves once the socket is gone (destroyed after `timeoutMs`). */
  close(code = 1000, timeoutMs = 5000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.sendClose(code);
    });
  }

  terminate(): void {
    this.socket.destroy();
  }

  private sendClose(code: number): void {
    if (this.closeSent) return;
    this.closeSent = true;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code, 0);
    this.socket.write(frame(0x8, p));
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this.closeCode);
  }

  /** Parses every complete frame of `chunk` in place; keeps a copy of a trailing partial frame. */
  private feed(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    const end = buf.length;
    let i = 0;
    while (i + 2 <= end && !this.closed) {
      const b0 = buf[i]!;
      const b1 = buf[i + 1]!;
      let len = b1 & 0x7f;
      let h = 2;
      if (len === 126) {
        if (i + 4 > end) break;
        len = buf.readUInt16BE(i + 2);
        h = 4;
      } else if (len === 127) {
        if (i + 10 > end) break;
        len = buf.readUInt32BE(i + 2) * 2 ** 32 + buf.readUInt32BE(i + 6);
        h = 10;
      }
      if ((b1 & 0x80) !== 0 || len > MAX_MESSAGE_BYTES) {
        // A server never masks (RFC 6455 5.1); an oversized message is not for a generator.
        this.closeCode = (b1 & 0x80) !== 0 ? 1002 : 1009;
        this.sendClose(this.closeCode);
        this.socket.destroy();
        return;
      }
      if (i + h + len > end) break;
      this.frameIn(b0, buf, i + h, i + h + len);
      i += h + len;
    }
    if (i < end && !this.closed) this.pending = Buffer.from(buf.subarray(i, end));
  }

  private frameIn(b0: number, buf: Buffer, start: number, end: number): void {
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    if (op === 0x1 || op === 0x2) {
      if (fin) this.onMessage(buf, start, end, this);
      else this.fragments = [Buffer.from(buf.subarray(start, end))];
    } else if (op === 0x0) {
      if (this.fragments === null) return;
      this.fragments.push(Buffer.from(buf.subarray(start, end)));
      if (fin) {
        const whole = Buffer.concat(this.fragments);
        this.fragments = null;
        this.onMessage(whole, 0, whole.length, this);
      }
    } else if (op === 0x8) {
      this.closeCode = end - start >= 2 ? buf.readUInt16BE(start) : 1005;
      this.sendClose(this.closeCode === 1005 ? 1000 : this.closeCode);
      this.socket.end();
    } else if (op === 0x9) {
      if (!this.closeSent) this.socket.write(frame(0xa, buf.subarray(start, end)));
    }
    // 0xa (pong) and reserved opcodes: nothing to do.
  }
}

/** One masked client frame (FIN set). */
function frame(op: number, payload: Uint8Array): Buffer {
  const len = payload.length;
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(h + 4 + len);
  out[0] = 0x80 | op;
  if (h === 2) out[1] = 0x80 | len;
  else if (h === 4) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  nextMask(out, h);
  for (let j = 0; j < len; j++) out[h + 4 + j] = payload[j]! ^ out[h + (j & 3)]!;
  return out;
}
