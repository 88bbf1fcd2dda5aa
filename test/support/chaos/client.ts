/**
 * One device of the chaos workload: the SDK's TicksClient over real `ws` sockets, with every frame
 * and every SDK event recorded into the shared History (history.ts).
 *
 * Fail-over: the client is given every node's URL. Each new socket goes to the next node in turn
 * (starting at a per-device offset), so after a node dies the SDK's ordinary reconnect with backoff
 * lands on a live one. A real deployment would do this with a load balancer or DNS.
 */
import WebSocket from 'ws';
import { TicksClient } from '../../../src/client/index.js';
import type { WebSocketFactory, WebSocketLike } from '../../../src/client/websocket.js';
import { decodeClientFrame, decodeServerFrame } from '../../../src/protocol/codec.js';
import type { History, DeviceKey } from './history.js';

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();
/** Fast reconnects: a test measures recovery, and the SDK's default 0.5-30 s backoff would dominate it. */
export const CHAOS_BACKOFF = { baseMs: 50, capMs: 500 };

export interface ChaosClientOptions {
  user: string;
  device: string;
  /** Base URLs (`ws://127.0.0.1:port`) of every node. */
  urls: () => string[];
  /** Where this device's first socket goes (index into urls). */
  offset: number;
  token: () => Promise<string>;
  history: History;
  /** Wall clock of the history (Date.now in the harness). */
  now: () => number;
}

export class ChaosClient {
  readonly sdk: TicksClient;
  readonly key: DeviceKey;
  readonly sockets = new Set<WebSocket>();
  /** Sockets opened, and closes seen by the SDK by code (for the figures). */
  opened = 0;
  readonly closeCodes = new Map<number, number>();
  /** Error codes of error frames received, by code. */
  readonly errorCodes = new Map<string, number>();
  /** The first message of each error code, for the run's report. */
  readonly errorSamples = new Map<string, string>();
  /** Last synced event time (ms), and how many there were. */
  syncedAt = 0;
  syncedCount = 0;
  /** The last frames both ways, in short form, for the report of an SDK error. */
  readonly trace: string[] = [];
  #next: number;
  #seqNo = 0;
  readonly #h: History;

  constructor(readonly o: ChaosClientOptions) {
    this.#h = o.history;
    this.key = o.history.device(o.user, o.device);
    this.#next = o.offset;
    this.sdk = new TicksClient({
      url: o.urls()[0]!,
      token: o.token,
      webSocketFactory: this.#factory,
      backoff: CHAOS_BACKOFF,
      // A node killed mid-request leaves no socket to time out on; these bound how long the SDK
      // waits on a silent one.
      helloTimeoutMs: 5_000,
      pingTimeoutMs: 5_000,
    });
    const h = this.#h;
    this.sdk.on('message', (m) =>
      h.deliver(o.now(), this.key, { conv: m.conv, seq: m.seq, mid: m.mid, from: m.from, fdev: m.fdev, cmid: m.cmid, body: textDecoder.decode(m.body), source: m.source, ...(m.sys === undefined ? {} : { sys: m.sys.op }) }),
    );
    this.sdk.on('sent', (e) => h.reported(o.now(), this.key, e.cmid, { conv: e.conv, seq: e.seq, mid: e.mid, dup: e.dup }));
    this.sdk.on('send-failed', (e) => {
      h.failed(o.now(), this.key, e.cmid, e.error.code);
      const code = `send-failed:${e.error.code}`;
      this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
      if (!this.errorSamples.has(code)) this.errorSamples.set(code, `${e.error.message} (state ${this.sdk.state}, node ${this.sdk.hello?.node ?? '?'})`);
    });
    this.sdk.on('receipt', (r) => h.receipt(o.now(), this.key, { conv: r.conv, kind: r.kind, user: r.user, device: r.device, seq: r.seq, source: r.source }));
    this.sdk.on('synced', () => {
      this.syncedAt = o.now();
      this.syncedCount++;
    });
    this.sdk.on('error', (e) => {
      this.errorCodes.set(e.error.code, (this.errorCodes.get(e.error.code) ?? 0) + 1);
      if (!this.errorSamples.has(e.error.code)) {
        const frames = e.conv === undefined ? '' : `; last frames of that conversation: ${this.trace.filter((l) => l.includes(e.conv!) || l.startsWith('closed')).slice(-12).join(' ')}; cursor ${this.sdk.cursor(e.conv)}`;
        this.errorSamples.set(e.error.code, `${e.error.message}${frames}`);
      }
    });
    this.sdk.on('state', (e) => {
      if (e.state === 'reconnecting' && e.code !== undefined) this.closeCodes.set(e.code, (this.closeCodes.get(e.code) ?? 0) + 1);
    });
  }

  get label(): string {
    return this.key;
  }

  /** Resolves at the first hello. */
  async connect(): Promise<void> {
    await this.sdk.connect();
  }

  /** Submits a message to `conv`; the outcome arrives as SDK events (recorded). Returns the cmid. */
  send(conv: string): string {
    const cmid = `${this.o.device}-${++this.#seqNo}-${Math.random().toString(36).slice(2, 8)}`;
    const body = `${this.key} ${cmid}`;
    this.#h.submit(this.o.now(), this.key, conv, cmid, body);
    // The promise's outcome is also an event (sent / send-failed), which is what gets recorded;
    // a rejection at close() is expected for anything still pending then (reported as unsettled).
    this.sdk.send({ conv }, textEncoder.encode(body), { cmid }).catch(() => {});
    return cmid;
  }

  /** Drops every socket abruptly (the SDK sees 1006 and reconnects). */
  cut(): number {
    const n = this.sockets.size;
    for (const ws of this.sockets) ws.terminate();
    return n;
  }

  close(): void {
    this.sdk.close();
    for (const ws of this.sockets) ws.terminate();
  }

  #note(line: string): void {
    this.trace.push(line);
    if (this.trace.length > 200) this.trace.splice(0, 100);
  }

  readonly #factory: WebSocketFactory = (url, headers) => {
    const urls = this.o.urls();
    const target = new URL(url);
    const base = new URL(urls[this.#next++ % urls.length]!);
    target.host = base.host;
    const real = new WebSocket(target.toString(), { headers, perMessageDeflate: false });
    this.sockets.add(real);
    this.opened++;
    // Request id -> cmid of the sends on this socket, to pair `sent` answers with their cmid; and
    // the history requests, to check their pages.
    const sends = new Map<number, string>();
    const histories = new Map<number, { conv: string; before: number; limit: number; requestedAt: number }>();
    const syncs = new Map<number, number>();
    const h = this.#h;
    const now = this.o.now;
    const shim: WebSocketLike = {
      get binaryType() {
        return real.binaryType;
      },
      set binaryType(v: string) {
        real.binaryType = v as WebSocket['binaryType'];
      },
      get readyState() {
        return real.readyState;
      },
      get bufferedAmount() {
        return real.bufferedAmount;
      },
      send: (data) => {
        const d = decodeClientFrame(data, { maxFrameBytes: 1 << 30, maxBodyBytes: 1 << 30 });
        if (d.ok && d.frame.t === 'send') sends.set(d.frame.id, d.frame.cmid);
        if (d.ok && d.frame.t === 'sync') syncs.set(d.frame.id, now());
        if (d.ok && d.frame.t === 'history') {
          const f = d.frame;
          this.#note(`>history#${f.id} ${f.conv} before=${f.before} limit=${f.limit}`);
          histories.set(f.id, { conv: f.conv, before: f.before ?? Number.MAX_SAFE_INTEGER, limit: f.limit, requestedAt: now() });
        }
        real.send(data);
      },
      close: (code, reason) => real.close(code, reason),
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
    };
    real.onopen = () => shim.onopen?.(undefined as never);
    real.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) {
        const d = decodeServerFrame(new Uint8Array(ev.data));
        if (d.ok) {
          const f = d.frame;
          const t = now();
          if (f.t === 'sent') {
            this.#note(`<sent ${f.conv}@${f.seq}`);
            const cmid = sends.get(f.id);
            if (cmid !== undefined) h.wireAck(t, this.key, cmid, { conv: f.conv, seq: f.seq, mid: f.mid, dup: f.dup });
          } else if (f.t === 'synced') {
            const requestedAt = syncs.get(f.id);
            if (requestedAt !== undefined) h.synced(t, this.key, requestedAt, f.heads);
            this.#note(`<synced#${f.id} ${Object.entries(f.heads).map(([c, s]) => `${c}:${s}`).join(',')} more=${f.more}`);
          } else if (f.t === 'msg') {
            this.#note(`<msg ${f.conv}@${f.seq}`);
            h.wireEntry(t, this.key, f.conv, f, 'msg');
          } else if (f.t === 'sync.batch' || f.t === 'history.page') {
            this.#note(`<${f.t}${'id' in f ? `#${f.id}` : ''} ${f.conv}@[${f.msgs.map((m) => m.seq).join(',')}]`);
            for (const e of f.msgs) h.wireEntry(t, this.key, f.conv, e, f.t);
            const req = f.t === 'history.page' ? histories.get(f.id) : undefined;
            if (req !== undefined) h.historyPage(t, this.key, { ...req, seqs: f.msgs.map((m) => m.seq), expired: f.expired === true });
          }
        }
      }
      shim.onmessage?.({ data: ev.data });
    };
    real.onclose = (ev) => {
      this.#note(`closed ${ev.code}`);
      this.sockets.delete(real);
      shim.onclose?.({ code: ev.code, reason: ev.reason });
    };
    real.onerror = () => shim.onerror?.(undefined as never);
    return shim;
  };
}
