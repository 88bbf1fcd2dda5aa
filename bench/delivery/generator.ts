/**
 * One load-generator process of bench/delivery, driven over IPC by run.ts. It owns a set of pairs
 * (sender device -> receiver device, one connection each, all from one loopback source address)
 * and sends on a fixed schedule (open loop).
 *
 * Schedule: the generator's n-th message is due at t0 + n * interval, for pair n mod pairs, as that
 * pair's message k = floor(n / pairs). Latencies are measured from this scheduled time, not from
 * when the send actually happened, so a stalled server (or generator) is charged for the whole wait
 * (coordinated omission corrected). The body carries the pair and k, so a delivery is matched
 * without any lookup; the sender's request id is k.
 */
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import { Recorder } from '../lib/hdr.js';
import { awaitHello, frameType, mintToken, openSocket, pack, unpack } from '../lib/wire.js';
import type { ConnectCmd, FromGenerator, RunCmd, RunResult, ToGenerator } from './messages.js';

const BODY_BYTES = 100;
const PRIME_K = 0xffffffff;
const PRIME_ID_BASE = 2 ** 40;
const HELLO_TIMEOUT_MS = 20_000;
const PRIME_TIMEOUT_MS = 60_000;

const nowUs = (): number => performance.now() * 1000;
const send = (m: FromGenerator): void => void process.send!(m);

interface Pair {
  index: number;
  sender: WebSocket;
  receiver: WebSocket;
  receiverUser: string;
  primeSent: boolean;
  primeAcked: boolean;
  primeDelivered: boolean;
  lastSeq: number;
}

/** The state of one run; null between runs. */
interface Run {
  cmd: RunCmd;
  t0: number;
  intervalUs: number;
  total: number;
  next: number;
  measureFrom: number;
  measureTo: number;
  acked: Uint8Array[];
  received: Uint8Array[];
  errored: Uint8Array[];
  r: Omit<RunResult, 't' | 'ackHist' | 'deliverHist' | 'lagHist' | 'cpuUs' | 'drainUs'>;
  ack: Recorder;
  deliver: Recorder;
  lag: Recorder;
  lastDeliveryUs: number;
  scheduleEndUs: number;
}

let pairs: Pair[] = [];
let run: Run | null = null;
let closing = false;
const primeWaiters = new Set<() => void>();

function count(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

function schedOf(r: Run, j: number, k: number): number {
  return r.t0 + (k * pairs.length + j) * r.intervalUs;
}

function onSenderFrame(j: number, data: Buffer): void {
  const t = frameType(data);
  const r = run;
  if (t === 'receipt') {
    if (r) r.r.receipts++;
    return;
  }
  const f = unpack(data);
  if (f === null) return;
  const id = typeof f['id'] === 'number' ? f['id'] : -1;
  if (id >= PRIME_ID_BASE) {
    const p = pairs[j]!;
    p.primeAcked = t === 'sent';
    if (t !== 'sent') process.stderr.write(`prime of pair ${p.index} answered ${t} ${String(f['code'])}\n`);
    for (const w of primeWaiters) w();
    return;
  }
  if (r === null) return;
  if (t === 'sent') {
    if (f['dup'] === true) r.r.dupAcks++;
    if (id < 0 || id >= r.acked[j]!.length || r.acked[j]![id]) return;
    r.acked[j]![id] = 1;
    r.r.acked++;
    const sched = schedOf(r, j, id);
    if (sched >= r.measureFrom && sched < r.measureTo) r.ack.record(nowUs() - sched);
  } else if (t === 'error') {
    count(r.r.errors, String(f['code']));
    if (id >= 0 && id < r.errored[j]!.length) r.errored[j]![id] = 1;
  }
}

function onReceiverFrame(j: number, data: Buffer): void {
  const t = frameType(data);
  if (t !== 'msg') {
    if (t === 'error' && run) count(run.r.errors, `receiver:${String(unpack(data)?.['code'])}`);
    return;
  }
  const now = nowUs();
  const f = unpack(data);
  if (f === null) return;
  const p = pairs[j]!;
  const conv = f['conv'] as string;
  const seq = f['seq'] as number;
  const body = f['body'] as Uint8Array;
  // Acknowledge first: the dack is what the server waits for to stop redelivering.
  p.receiver.send(pack({ t: 'dack', conv, seq }));
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const pairIndex = dv.getUint32(0, true);
  const k = dv.getUint32(4, true);
  if (k === PRIME_K) {
    p.primeDelivered = true;
    p.lastSeq = Math.max(p.lastSeq, seq);
    for (const w of primeWaiters) w();
    return;
  }
  const r = run;
  if (r === null || pairIndex !== p.index || k >= r.received[j]!.length) return;
  if (r.received[j]![k]) {
    r.r.duplicates++;
    return;
  }
  if (seq < p.lastSeq) r.r.outOfOrder++;
  p.lastSeq = Math.max(p.lastSeq, seq);
  r.received[j]![k] = 1;
  r.r.delivered++;
  r.lastDeliveryUs = now;
  if (now >= r.measureFrom && now < r.measureTo) r.r.deliveredInWindow++;
  const sched = schedOf(r, j, k);
  if (sched >= r.measureFrom && sched < r.measureTo) r.deliver.record(now - sched);
}

function body(pairIndex: number, k: number, sched: number): Buffer {
  const b = Buffer.alloc(BODY_BYTES);
  b.writeUInt32LE(pairIndex, 0);
  b.writeUInt32LE(k, 4);
  b.writeDoubleLE(sched, 8);
  return b;
}

async function connect(cmd: ConnectCmd): Promise<void> {
  const failures: Record<string, number> = {};
  const opened: (Pair | null)[] = new Array(cmd.pairs.length).fill(null);
  let nextIdx = 0;
  const open = async (user: string, url = cmd.url): Promise<WebSocket> => {
    const token = await mintToken(cmd.secret, user, 'd1');
    const ws = openSocket(url, token, cmd.localAddress);
    ws.on('error', () => {}); // a failed socket also closes; the close is what is counted
    await awaitHello(ws, HELLO_TIMEOUT_MS);
    return ws;
  };
  const worker = async (): Promise<void> => {
    while (nextIdx < cmd.pairs.length) {
      const slot = nextIdx++;
      const i = cmd.pairs[slot]!;
      try {
        const [sender, receiver] = await Promise.all([open(`s${i}`), open(`r${i}`, cmd.receiverUrl)]);
        opened[slot] = { index: i, sender, receiver, receiverUser: `r${i}`, primeSent: false, primeAcked: false, primeDelivered: false, lastSeq: 0 };
      } catch (err) {
        count(failures, (err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  pairs = opened.filter((p): p is Pair => p !== null);
  pairs.forEach((p, j) => {
    p.sender.on('message', (data: Buffer) => onSenderFrame(j, data));
    p.receiver.on('message', (data: Buffer) => onReceiverFrame(j, data));
    for (const ws of [p.sender, p.receiver]) {
      ws.on('close', (code: number) => {
        if (!closing && run) count(run.r.closes, String(code));
        else if (!closing) process.stderr.write(`pair ${p.index}: socket closed ${code} between runs\n`);
      });
    }
  });
  // Prime: one message per pair creates the direct conversation and activates its actors, so the
  // measured runs see a warm server (first sends pay conversation creation).
  const started = Date.now();
  pairs.forEach((p, j) => {
    p.primeSent = true;
    p.sender.send(pack({ t: 'send', id: PRIME_ID_BASE + j, to: p.receiverUser, cmid: `prime-${Date.now()}`, body: body(p.index, PRIME_K, 0) }));
  });
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (pairs.every((p) => p.primeAcked && p.primeDelivered) || Date.now() - started > PRIME_TIMEOUT_MS) {
        primeWaiters.delete(check);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(check, PRIME_TIMEOUT_MS + 10);
    primeWaiters.add(check);
    check();
  });
  const unprimed = pairs.filter((p) => !(p.primeAcked && p.primeDelivered)).length;
  if (unprimed > 0) count(failures, 'prime not acked and delivered');
  send({ t: 'ready', connected: pairs.length - unprimed, failed: cmd.pairs.length - pairs.length + unprimed, failures, primeMs: Date.now() - started });
}

async function runOnce(cmd: RunCmd): Promise<void> {
  const n = pairs.length;
  const intervalUs = 1e6 / cmd.rate;
  const total = Math.floor((cmd.warmupS + cmd.durationS) * cmd.rate);
  const perPair = Math.ceil(total / n) + 1;
  const t0 = nowUs() + (cmd.startAtEpochMs - Date.now()) * 1000;
  const r: Run = {
    cmd,
    t0,
    intervalUs,
    total,
    next: 0,
    measureFrom: t0 + cmd.warmupS * 1e6,
    measureTo: t0 + (cmd.warmupS + cmd.durationS) * 1e6,
    acked: pairs.map(() => new Uint8Array(perPair)),
    received: pairs.map(() => new Uint8Array(perPair)),
    errored: pairs.map(() => new Uint8Array(perPair)),
    r: {
      scheduled: 0, measuredScheduled: 0, acked: 0, delivered: 0, deliveredInWindow: 0, lost: 0, duplicates: 0,
      dupAcks: 0, outOfOrder: 0, unanswered: 0, errors: {}, closes: {}, receipts: 0,
    },
    ack: new Recorder(),
    deliver: new Recorder(),
    lag: new Recorder(),
    lastDeliveryUs: 0,
    scheduleEndUs: t0 + total * intervalUs,
  };
  run = r;
  let cpuStart: NodeJS.CpuUsage | null = null;
  let cpuUs = 0;
  const cpuTimers = [
    setTimeout(() => (cpuStart = process.cpuUsage()), Math.max(0, (r.measureFrom - nowUs()) / 1000)),
    setTimeout(() => {
      const d = process.cpuUsage(cpuStart ?? undefined);
      cpuUs = d.user + d.system;
    }, Math.max(0, (r.measureTo - nowUs()) / 1000)),
  ];

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = nowUs();
      const due = Math.min(r.total, Math.floor((now - r.t0) / r.intervalUs) + 1);
      while (r.next < due) {
        const m = r.next++;
        const j = m % n;
        const k = Math.floor(m / n);
        const sched = r.t0 + m * r.intervalUs;
        const p = pairs[j]!;
        r.lag.record(now - sched);
        r.r.scheduled++;
        if (sched >= r.measureFrom && sched < r.measureTo) r.r.measuredScheduled++;
        p.sender.send(pack({ t: 'send', id: k, to: p.receiverUser, cmid: `${cmd.tag}.${k}`, body: body(p.index, k, sched) }));
      }
      if (r.next < r.total) setTimeout(tick, 1);
      else resolve();
    };
    setTimeout(tick, Math.max(0, (r.t0 - nowUs()) / 1000));
  });

  // Grace: wait for outstanding answers and deliveries (bounded).
  const graceEnd = Date.now() + cmd.graceMs;
  const settled = (): boolean => {
    for (let j = 0; j < n; j++) {
      const a = r.acked[j]!;
      const rc = r.received[j]!;
      const e = r.errored[j]!;
      const sentHere = Math.floor((r.total - j + n - 1) / n);
      for (let k = 0; k < sentHere; k++) {
        if (e[k]) continue;
        if (!a[k] || !rc[k]) return false;
      }
    }
    return true;
  };
  while (Date.now() < graceEnd && !settled()) await new Promise((res) => setTimeout(res, 50));
  // Let the measured window close before reading the CPU timer (a very short run ends first).
  while (nowUs() < r.measureTo + 5000) await new Promise((res) => setTimeout(res, 10));
  for (const t of cpuTimers) clearTimeout(t);

  for (let j = 0; j < n; j++) {
    const sentHere = Math.floor((r.total - j + n - 1) / n);
    for (let k = 0; k < sentHere; k++) {
      const acked = r.acked[j]![k] === 1;
      const got = r.received[j]![k] === 1;
      if (acked && !got) r.r.lost++;
      if (!acked && !r.errored[j]![k]) r.r.unanswered++;
    }
  }
  run = null;
  send({
    t: 'result',
    ...r.r,
    drainUs: r.lastDeliveryUs > 0 ? Math.max(0, r.lastDeliveryUs - r.scheduleEndUs) : 0,
    cpuUs,
    ackHist: r.ack.encode(),
    deliverHist: r.deliver.encode(),
    lagHist: r.lag.encode(),
  });
}

async function disconnect(): Promise<void> {
  closing = true;
  const sockets = pairs.flatMap((p) => [p.sender, p.receiver]);
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === ws.CLOSED) return resolve();
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 5000);
          ws.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close(1000);
        }),
    ),
  );
  pairs = [];
  closing = false;
  send({ t: 'disconnected' });
}

process.on('message', (m: ToGenerator) => {
  const done = (p: Promise<void>): void => {
    p.catch((err: unknown) => send({ t: 'fatal', error: (err as Error).stack ?? String(err) }));
  };
  switch (m.t) {
    case 'connect':
      return done(connect(m));
    case 'run':
      return done(runOnce(m));
    case 'disconnect':
      return done(disconnect());
  }
});
// The orchestrator ending its side of the channel means: exit.
process.on('disconnect', () => process.exit(0));
