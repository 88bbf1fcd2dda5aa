/**
 * A recording wrapper around the SDK's TicksClient for end-to-end tests, over real `ws` sockets
 * whose network the test controls (TestNetwork): cut every connection, refuse new ones (offline),
 * drop a connection right before a chosen frame goes out or right when a chosen answer comes in.
 *
 * Everything the SDK emits is kept in order in `log`, so a test can check what happened between two
 * points (`mark()` and `since()`), and `describe()` summarises the client for failure messages.
 */
import WebSocket from 'ws';
import { TicksClient, type ClientOptions, type Message, type ReceiptEvent, type SendResult, type SentEvent, type StateEvent, type SyncedEvent } from '../../src/client/index.js';
import type { WebSocketFactory, WebSocketLike } from '../../src/client/websocket.js';
import type { ClientFrame, ServerFrame } from '../../src/protocol/client-frames.js';
import { decodeClientFrame, decodeServerFrame } from '../../src/protocol/codec.js';

export const DEFAULT_WAIT_MS = 30_000;
/** Fast reconnects: a test waits for conditions, and 0.5 s to 30 s backoff would only slow it down. */
export const TEST_BACKOFF = { baseMs: 50, capMs: 400 };
const TRACE_FRAMES = 40;

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Waits (real time) until `pred` holds; on timeout fails with `what` and the state `describe` gives. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, describe: () => string = () => '', timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}\n${describe()}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 10));
  }
}

/** The sockets of one client, and the faults a test can inject into them. */
export class TestNetwork {
  /** While true, opening a socket fails (the SDK backs off and retries). */
  offline = false;
  readonly sockets = new Set<WebSocket>();
  /** A client frame about to be written: return true to cut the connection instead (the frame is lost). */
  cutBeforeSend: ((f: ClientFrame) => boolean) | null = null;
  /** A client frame was just written: return true to cut the connection right after it (it may or may not arrive). */
  cutAfterSend: ((f: ClientFrame) => boolean) | null = null;
  /** A server frame about to reach the SDK: return true to cut the connection instead (it never sees it). */
  cutOnReceive: ((f: ServerFrame) => boolean) | null = null;
  opened = 0;
  cuts = 0;
  /** The last frames both ways, in short form (`>send#3`, `<sent#3@16`), for failure messages. */
  readonly trace: string[] = [];

  private note(dir: '>' | '<', f: ClientFrame | ServerFrame): void {
    const id = 'id' in f && f.id !== undefined ? `#${f.id}` : '';
    const seq = 'seq' in f ? `@${f.seq}` : '';
    const code = f.t === 'error' ? `:${f.code}` : '';
    this.trace.push(`${dir}${f.t}${id}${seq}${code}`);
    if (this.trace.length > TRACE_FRAMES) this.trace.shift();
  }

  /** Drops every connection abruptly (the SDK sees 1006 and reconnects). */
  cut(): number {
    const n = this.sockets.size;
    for (const ws of this.sockets) ws.terminate();
    this.cuts += n;
    return n;
  }

  readonly factory: WebSocketFactory = (url, headers) => {
    if (this.offline) throw new Error('the test network is offline');
    const real = new WebSocket(url, { headers, perMessageDeflate: false });
    this.sockets.add(real);
    this.opened++;
    const cutNow = (): void => {
      this.cuts++;
      real.terminate();
    };
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
        if (d.ok && this.cutBeforeSend?.(d.frame)) return cutNow();
        if (d.ok) this.note('>', d.frame);
        real.send(data);
        if (d.ok && this.cutAfterSend?.(d.frame)) cutNow();
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
        if (d.ok && this.cutOnReceive?.(d.frame)) return cutNow();
        if (d.ok) this.note('<', d.frame);
      }
      shim.onmessage?.({ data: ev.data });
    };
    real.onclose = (ev) => {
      this.sockets.delete(real);
      shim.onclose?.({ code: ev.code, reason: ev.reason });
    };
    real.onerror = () => shim.onerror?.(undefined as never);
    return shim;
  };
}

export type Logged =
  | { k: 'message'; m: Message }
  | { k: 'sent'; e: SentEvent }
  | { k: 'receipt'; e: ReceiptEvent }
  | { k: 'synced'; e: SyncedEvent }
  | { k: 'state'; e: StateEvent }
  | { k: 'error'; code: string; msg: string }
  | { k: 'closed'; code: number };

export interface E2eClientOptions extends Pick<ClientOptions, 'cursors' | 'syncLimit' | 'backoff' | 'ackDelayMs'> {
  url: string;
  token: () => Promise<string>;
  label: string;
}

export interface Outgoing {
  cmid: string | undefined;
  body: string;
  result?: SendResult;
  error?: unknown;
}

export class E2eClient {
  readonly sdk: TicksClient;
  readonly net = new TestNetwork();
  readonly log: Logged[] = [];
  readonly outgoing: Outgoing[] = [];

  constructor(readonly o: E2eClientOptions) {
    this.sdk = new TicksClient({
      url: o.url,
      token: o.token,
      webSocketFactory: this.net.factory,
      backoff: o.backoff ?? TEST_BACKOFF,
      ...(o.cursors === undefined ? {} : { cursors: o.cursors }),
      ...(o.syncLimit === undefined ? {} : { syncLimit: o.syncLimit }),
      ...(o.ackDelayMs === undefined ? {} : { ackDelayMs: o.ackDelayMs }),
    });
    this.sdk.on('message', (m) => this.log.push({ k: 'message', m }));
    this.sdk.on('sent', (e) => this.log.push({ k: 'sent', e }));
    this.sdk.on('receipt', (e) => this.log.push({ k: 'receipt', e }));
    this.sdk.on('synced', (e) => this.log.push({ k: 'synced', e }));
    this.sdk.on('state', (e) => this.log.push({ k: 'state', e }));
    this.sdk.on('error', (e) => this.log.push({ k: 'error', code: e.error.code, msg: e.error.message }));
    this.sdk.on('closed', (e) => this.log.push({ k: 'closed', code: e.code }));
  }

  get label(): string {
    return this.o.label;
  }

  /** Connects and waits until the first sync round says the device is caught up. */
  async connect(): Promise<void> {
    const mark = this.mark();
    await this.sdk.connect();
    await this.waitSynced(mark);
  }

  close(): void {
    this.sdk.close();
  }

  /** Sends a text body and records the outcome. */
  send(target: { to: string } | { conv: string }, body: string, cmid?: string): Promise<SendResult> {
    const out: Outgoing = { cmid, body };
    this.outgoing.push(out);
    const p = this.sdk.send(target, utf8(body), cmid === undefined ? {} : { cmid });
    p.then(
      (r) => (out.result = r),
      (err: unknown) => (out.error = err),
    );
    // An SDK send waits as long as it takes; a test must not. The timeout says where it stood.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`send "${body}" (cmid ${cmid ?? 'generated'}) not stored after ${DEFAULT_WAIT_MS} ms\n${this.describe()}`)), DEFAULT_WAIT_MS);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  mark(): number {
    return this.log.length;
  }

  since(mark: number): Logged[] {
    return this.log.slice(mark);
  }

  messages(conv?: string, from = 0): Message[] {
    return this.since(from).flatMap((l) => (l.k === 'message' && (conv === undefined || l.m.conv === conv) ? [l.m] : []));
  }

  receipts(from = 0): ReceiptEvent[] {
    return this.since(from).flatMap((l) => (l.k === 'receipt' ? [l.e] : []));
  }

  synced(from = 0): SyncedEvent[] {
    return this.since(from).flatMap((l) => (l.k === 'synced' ? [l.e] : []));
  }

  /** Close codes that made the SDK reconnect. */
  reconnectCodes(from = 0): number[] {
    return this.since(from).flatMap((l) => (l.k === 'state' && l.e.state === 'reconnecting' && l.e.code !== undefined ? [l.e.code] : []));
  }

  /** Waits for a `synced` (caught up) event logged after `mark`. */
  waitSynced(mark: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return waitUntil(() => this.synced(mark).length > 0, `${this.label} to be caught up (synced)`, () => this.describe(), timeoutMs);
  }

  /**
   * What this device holds of `conv`: seq -> message, from received messages and its own stored
   * sends (a sending device gets no `msg` of its own message). Throws on a seq seen twice with
   * different ids.
   */
  view(conv: string): Map<number, { mid: string; body: string; own: boolean }> {
    const out = new Map<number, { mid: string; body: string; own: boolean }>();
    const put = (seq: number, v: { mid: string; body: string; own: boolean }): void => {
      const had = out.get(seq);
      if (had !== undefined && had.mid !== v.mid) throw new Error(`${this.label}: seq ${seq} of ${conv} seen as ${had.mid} and ${v.mid}`);
      out.set(seq, v);
    };
    for (const m of this.messages(conv)) put(m.seq, { mid: m.mid, body: text(m.body), own: false });
    for (const o of this.outgoing) if (o.result?.conv === conv) put(o.result.seq, { mid: o.result.mid, body: o.body, own: true });
    return out;
  }

  describe(): string {
    const convs = new Map<string, number[]>();
    for (const m of this.messages()) convs.set(m.conv, [...(convs.get(m.conv) ?? []), m.seq]);
    const lines = [
      `  ${this.label}: state=${this.sdk.state} caughtUp=${this.sdk.caughtUp} cursors=${JSON.stringify(this.sdk.cursors())} pendingSends=${this.sdk.pendingSends().length}`,
      `    sockets opened=${this.net.opened} cut=${this.net.cuts} offline=${this.net.offline}; reconnect codes=[${this.reconnectCodes().join(',')}]`,
      `    sends: ${this.outgoing.filter((o) => o.result).length} stored, ${this.outgoing.filter((o) => o.error).length} failed, ${this.outgoing.filter((o) => !o.result && !o.error).length} pending`,
      ...[...convs].map(([conv, seqs]) => `    received ${conv}: ${compact(seqs)}`),
      `    receipts: ${this.receipts().map((r) => `${r.kind}:${r.user}${r.device ? '/' + r.device : ''}@${r.seq}(${r.source})`).join(' ') || 'none'}`,
      `    last frames: ${this.net.trace.join(' ')}`,
      `    synced events: ${this.synced().length}; errors: ${this.since(0).flatMap((l) => (l.k === 'error' ? [l.code] : [])).join(',') || 'none'}`,
    ];
    return lines.join('\n');
  }
}

/** `1-5,7,9-12`: a short form of a list of seqs, for failure messages (order kept). */
export function compact(seqs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seqs.length; ) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++;
    parts.push(i === j ? `${seqs[i]}` : `${seqs[i]}-${seqs[j]}`);
    i = j + 1;
  }
  return parts.join(',') || 'none';
}

/** Describes several clients, for failure messages. */
export function describeAll(clients: E2eClient[]): () => string {
  return () => clients.map((c) => c.describe()).join('\n');
}

/** 1..n */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}
