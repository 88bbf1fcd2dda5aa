/**
 * One receiver process of bench/fanout, driven over IPC by run.ts: it holds the sockets of many
 * group members or channel subscribers (one user, one device, one connection each, all from one
 * loopback source address), counts every delivery of every bench message per receiver, and
 * records send->delivery latencies.
 *
 * Sockets are raw `net` sockets with a minimal WebSocket client (bench/lib/raw-ws.ts): every read
 * lands in one buffer per process and its frames are parsed in place, so a delivery costs no
 * allocation here. (With `ws` clients the receivers' core was the limit of the channel runs, at
 * 2.1-3.6 µs per delivery.)
 *
 * A bench message's body starts with 8 bytes `TKFO` + the run tag, then the message index (u32 at
 * 8) and its scheduled send time (epoch µs, f64 at 16). A `msg` frame is matched by searching its
 * raw bytes for those 8 bytes (Buffer.indexOf), not by decoding it: at hundreds of thousands of
 * deliveries per second the generator's own decoding would be the bottleneck. The last `msg` of
 * each socket is copied into the socket's own small buffer and decoded only when its cumulative
 * dack is due (every `dackMs`, as the SDK batches dacks), to read its conversation and seq.
 *
 * Latency uses epoch microseconds (performance.timeOrigin + performance.now()) on both ends, so it
 * is comparable across processes on this machine.
 */
import { Recorder } from '../lib/hdr.js';
import { RawWebSocket, rawWsStats } from '../lib/raw-ws.js';
import { frameType, mintToken, pack, unpack } from '../lib/wire.js';
import { MAGIC, epochUs } from './body.js';
import type { ArmCmd, ConnectCmd, FromReceiver, JoinCmd, ReportCmd, RunReport, ToReceiver } from './messages.js';

const HELLO_TIMEOUT_MS = 30_000;
const JOIN_TIMEOUT_MS = 60_000;
const FIRST_PORT = 10_000;
const LAST_PORT = 65_535;

const send = (m: FromReceiver): void => void process.send!(m);

interface Rx {
  user: string;
  conv: number;
  ws: RawWebSocket;
  /** A copy of the last `msg` frame (its first `lastLen` bytes), counted by `lastGen`; `dackedGen`: the one last dacked. */
  last: Buffer;
  lastLen: number;
  lastGen: number;
  dackedGen: number;
  got: Uint8Array | null;
  /** ms after arm of each message's first delivery (to tell a redelivery from a duplicate). */
  firstMs: Uint32Array | null;
  lastK: number;
  /** Answers to requests (conv.join), by request id. */
  waiters: Map<number, (frame: Record<string, unknown>) => void>;
}

interface Run {
  cmd: ArmCmd;
  key: Buffer;
  lastUs: Float64Array;
  countOf: Uint32Array;
  hist: Recorder;
  r: Omit<RunReport, 't' | 'receivers' | 'lastUs' | 'countOf' | 'deliveryHist' | 'cpuUs' | 'missing' | 'receiversMissing' | 'missingExamples' | 'unackedDelivered' | 'reads' | 'readBytes'>;
  cpu0: NodeJS.CpuUsage;
  reads0: number;
  bytes0: number;
  armedMs: number;
}

let rxs: Rx[] = [];
let run: Run | null = null;
let closing = false;
let nextPort = FIRST_PORT;
let nextReq = 1;
const errors: Record<string, number> = {};
const closes: Record<string, number> = {};
let otherMsgs = 0;
let lastDeliveryUs = 0;
let dackTimer: NodeJS.Timeout | null = null;

function count(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/** Keeps a copy of the socket's last `msg` frame (for its dack): the read buffer is reused. */
function keepLast(rx: Rx, buf: Buffer, start: number, end: number): void {
  const n = end - start;
  if (rx.last.length < n) rx.last = Buffer.allocUnsafe(Math.max(n, rx.last.length * 2));
  buf.copy(rx.last, 0, start, end);
  rx.lastLen = n;
  rx.lastGen++;
}

/** One server frame, `buf[start, end)`, valid during the call only. */
function onFrame(rx: Rx, buf: Buffer, start: number, end: number): void {
  const r = run;
  // A bench message first, without decoding: only `msg` frames carry its body here. The search may
  // run past `end` into the next frames of the same read: a hit counts only inside this frame.
  let at = r === null ? -1 : buf.indexOf(r.key, start);
  if (at >= 0 && at + 24 > end) at = -1;
  if (r === null || at < 0) {
    const data = buf.subarray(start, end);
    const t = frameType(data);
    if (r !== null) count(r.r.frames, t);
    if (t === 'msg') {
      keepLast(rx, buf, start, end);
      otherMsgs++;
    } else if (t === 'error' || t === 'conv.ok') {
      const f = unpack(data);
      const id = typeof f?.['id'] === 'number' ? f['id'] : -1;
      const w = rx.waiters.get(id);
      if (w && f) {
        rx.waiters.delete(id);
        w(f);
      } else if (t === 'error') count(errors, String(f?.['code']));
    }
    return;
  }
  const now = epochUs();
  // Server frames put `t` first (fixmap, "t", "msg"): one that does not is counted apart.
  if (buf[start + 1] !== 0xa1 || buf[start + 2] !== 0x74 || buf[start + 3] !== 0xa3) count(r.r.frames, 'msg (t not first)');
  keepLast(rx, buf, start, end);
  const k = buf.readUInt32LE(at + 8);
  const sched = buf.readDoubleLE(at + 16);
  if (k >= r.cmd.messages || rx.got === null || k % r.cmd.convs !== rx.conv) {
    r.r.foreign++;
    return;
  }
  if (rx.got[k]! > 0) {
    // Slack under the retry delay: the server's timer and this clock differ by scheduling noise.
    if (now / 1000 - r.armedMs - rx.firstMs![k]! >= r.cmd.retryMs * 0.75) r.r.retried++;
    else r.r.duplicates++;
    if (rx.got[k]! < 255) rx.got[k]!++;
    return;
  }
  rx.got[k] = 1;
  rx.firstMs![k] = now / 1000 - r.armedMs;
  if (k < rx.lastK) r.r.outOfOrder++;
  rx.lastK = Math.max(rx.lastK, k);
  r.r.delivered++;
  lastDeliveryUs = now;
  if (now >= r.cmd.measureFromUs && now < r.cmd.measureToUs) r.r.deliveredInWindow++;
  const lat = now - sched;
  if (lat > r.lastUs[k]!) r.lastUs[k] = lat;
  r.countOf[k]!++;
  if (sched >= r.cmd.measureFromUs && sched < r.cmd.measureToUs) r.hist.record(lat);
}

/** Cumulative dack of each socket's last `msg` when it moved since the last dack. */
function dackAll(): void {
  for (const rx of rxs) {
    if (rx.lastGen === rx.dackedGen) continue;
    const f = unpack(rx.last.subarray(0, rx.lastLen));
    rx.dackedGen = rx.lastGen;
    if (f === null || typeof f['conv'] !== 'string' || typeof f['seq'] !== 'number') continue;
    rx.ws.send(pack({ t: 'dack', conv: f['conv'], seq: f['seq'] }));
    if (run) run.r.dacksSent++;
  }
}

function newRx(cmd: ConnectCmd, i: number, ws: RawWebSocket): Rx {
  return { user: cmd.users[i]!, conv: cmd.convOf[i]!, ws, last: Buffer.allocUnsafe(256), lastLen: 0, lastGen: 0, dackedGen: 0, got: null, firstMs: null, lastK: -1, waiters: new Map() };
}

/** Opens one socket and waits for its `hello` (rejects with the close code or error that came instead). */
async function openWs(cmd: ConnectCmd, i: number, token: string, port: number): Promise<Rx> {
  let rx: Rx | null = null;
  let hello: (err: Error | null) => void = () => {};
  const helloSeen = new Promise<void>((resolve, reject) => {
    hello = (err) => (err === null ? resolve() : reject(err));
  });
  const ws = await RawWebSocket.connect({
    url: cmd.urls[cmd.nodeOf[i]!]!,
    headers: { authorization: `Bearer ${token}` },
    localAddress: cmd.localAddress,
    localPort: port,
    timeoutMs: HELLO_TIMEOUT_MS,
    onMessage: (buf, start, end, ws) => {
      // The first frame must be `hello`; then every frame goes to onFrame.
      if (rx !== null) return;
      const f = unpack(buf.subarray(start, end));
      if (f?.['t'] !== 'hello') return hello(new Error(`first frame ${String(f?.['t'])} ${String(f?.['code'] ?? '')}`));
      rx = newRx(cmd, i, ws);
      const r = rx;
      ws.onMessage = (b, s, e) => onFrame(r, b, s, e);
      hello(null);
    },
    onClose: (code) => {
      if (rx === null) hello(new Error(`close ${code}`));
      else if (!closing) count(closes, String(code));
    },
  });
  const timer = setTimeout(() => hello(new Error('timeout')), HELLO_TIMEOUT_MS);
  try {
    await helloSeen;
  } catch (err) {
    ws.terminate();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return rx!;
}

async function connect(cmd: ConnectCmd): Promise<void> {
  const started = Date.now();
  const failures: Record<string, number> = {};
  const opened: (Rx | null)[] = new Array(cmd.users.length).fill(null);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cmd.users.length) {
      const i = next++;
      const user = cmd.users[i]!;
      try {
        const token = await mintToken(cmd.secret, user, 'd1', 24 * 3600);
        let rx: Rx | null = null;
        for (let attempt = 0; rx === null; attempt++) {
          if (nextPort > LAST_PORT) throw new Error('out of source ports');
          const port = nextPort++;
          try {
            rx = await openWs(cmd, i, token, port);
          } catch (err) {
            if (!/EADDRINUSE/.test((err as Error).message) || attempt >= 20) throw err;
          }
        }
        opened[i] = rx;
      } catch (err) {
        count(failures, (err as Error).message.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'addr'));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  rxs = opened.filter((x): x is Rx => x !== null);
  if (dackTimer) clearInterval(dackTimer);
  dackTimer = cmd.dackMs > 0 ? setInterval(dackAll, cmd.dackMs) : null;
  send({ t: 'ready', connected: rxs.length, failed: cmd.users.length - rxs.length, failures, ms: Date.now() - started });
}

/** Every receiver joins channel `conv` (conv.join) and waits for conv.ok. */
async function join(cmd: JoinCmd): Promise<void> {
  const started = Date.now();
  const failures: Record<string, number> = {};
  let ok = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < rxs.length) {
      const rx = rxs[next++]!;
      const id = nextReq++;
      const answer = await new Promise<Record<string, unknown>>((resolve) => {
        const timer = setTimeout(() => {
          rx.waiters.delete(id);
          resolve({ t: 'error', code: 'timeout' });
        }, JOIN_TIMEOUT_MS);
        rx.waiters.set(id, (f) => {
          clearTimeout(timer);
          resolve(f);
        });
        rx.ws.send(pack({ t: 'conv.join', id, conv: cmd.convs[rx.conv]! }));
      });
      if (answer['t'] === 'conv.ok') ok++;
      else count(failures, String(answer['code']));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  send({ t: 'joined', ok, failed: rxs.length - ok, failures, ms: Date.now() - started });
}

function arm(cmd: ArmCmd): void {
  const key = Buffer.alloc(8);
  MAGIC.copy(key, 0);
  key.writeUInt32LE(cmd.tag, 4);
  for (const rx of rxs) {
    rx.got = new Uint8Array(cmd.messages);
    rx.firstMs = new Uint32Array(cmd.messages);
    rx.lastK = -1;
  }
  run = {
    cmd,
    key,
    lastUs: new Float64Array(cmd.messages).fill(-1),
    countOf: new Uint32Array(cmd.messages),
    hist: new Recorder(),
    r: { delivered: 0, deliveredInWindow: 0, duplicates: 0, retried: 0, outOfOrder: 0, frames: {}, dacksSent: 0, foreign: 0, errors, closes, otherMsgs: 0 },
    cpu0: process.cpuUsage(),
    reads0: rawWsStats.reads,
    bytes0: rawWsStats.bytes,
    armedMs: epochUs() / 1000,
  };
  send({ t: 'armed' });
}

async function report(cmd: ReportCmd): Promise<void> {
  const r = run;
  if (r === null) throw new Error('report before arm');
  const acked = new Uint8Array(r.cmd.messages);
  for (const k of cmd.acked) if (k < acked.length) acked[k] = 1;
  const convs = r.cmd.convs;
  const complete = (): boolean => {
    for (const rx of rxs) {
      const got = rx.got!;
      for (let k = rx.conv; k < got.length; k += convs) if (acked[k] && !got[k]) return false;
    }
    return true;
  };
  lastDeliveryUs = Math.max(lastDeliveryUs, epochUs());
  while (Date.now() < cmd.untilEpochMs && epochUs() - lastDeliveryUs < cmd.stallMs * 1000 && !complete()) await new Promise((res) => setTimeout(res, 50));
  const cpu = process.cpuUsage(r.cpu0);
  dackAll();
  let missing = 0;
  let receiversMissing = 0;
  let unackedDelivered = 0;
  const examples: string[] = [];
  for (const rx of rxs) {
    const got = rx.got!;
    let m = 0;
    for (let k = rx.conv; k < got.length; k += convs) {
      if (acked[k] && !got[k]) {
        m++;
        if (examples.length < 5) examples.push(`${rx.user}:${k}`);
      } else if (!acked[k] && got[k]) unackedDelivered++;
    }
    missing += m;
    if (m > 0) receiversMissing++;
  }
  run = null;
  send({
    t: 'report',
    receivers: rxs.length,
    ...r.r,
    otherMsgs,
    missing,
    receiversMissing,
    missingExamples: examples,
    unackedDelivered,
    lastUs: Array.from(r.lastUs),
    countOf: Array.from(r.countOf),
    deliveryHist: r.hist.encode(),
    cpuUs: cpu.user + cpu.system,
    reads: rawWsStats.reads - r.reads0,
    readBytes: rawWsStats.bytes - r.bytes0,
  });
}

async function disconnect(): Promise<void> {
  closing = true;
  if (dackTimer) clearInterval(dackTimer);
  dackTimer = null;
  for (let i = 0; i < rxs.length; i += 1000) {
    await Promise.all(rxs.slice(i, i + 1000).map(({ ws }) => ws.close()));
  }
  rxs = [];
  closing = false;
  for (const k of Object.keys(errors)) delete errors[k];
  for (const k of Object.keys(closes)) delete closes[k];
  otherMsgs = 0;
  send({ t: 'disconnected' });
}

process.on('message', (m: ToReceiver) => {
  const done = (p: Promise<void>): void => {
    p.catch((err: unknown) => send({ t: 'fatal', error: (err as Error).stack ?? String(err) }));
  };
  switch (m.t) {
    case 'connect':
      return done(connect(m));
    case 'join':
      return done(join(m));
    case 'arm':
      return done(Promise.resolve().then(() => arm(m)));
    case 'report':
      return done(report(m));
    case 'disconnect':
      return done(disconnect());
  }
});
process.on('disconnect', () => process.exit(0));
