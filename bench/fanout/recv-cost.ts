/**
 * The receivers' own cost per delivery, apart from ticks: a bare uWS server (this process, CPU 0)
 * publishes channel-like `msg` frames (the real encoding, a bench/fanout body) to N sockets held
 * by one child process (CPU 1) that uses either `ws` clients (bench/lib/wire.ts openSocket) or the
 * raw client (bench/lib/raw-ws.ts), and matches each frame as receiver.ts does (search for the body
 * key, read the index). Reports the child's CPU µs per frame at a fixed offered rate, so the two
 * clients compare without the nodes' noise.
 *
 *   node --import tsx bench/fanout/recv-cost.ts [--sockets 2000] [--rate 100000] [--per-turn 1] [--seconds 5] [--runs 3]
 *
 * --rate: frames/s offered in all (sockets x publishes/s); --per-turn: publishes per event-loop
 * turn (uWS writes one turn's publishes to a socket as one write, so this is frames per write).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import { encodeServerFrame } from '../../src/protocol/codec.js';
import { pinProcess } from '../lib/processes.js';
import { RawWebSocket } from '../lib/raw-ws.js';
import { openSocket } from '../lib/wire.js';
import { MAGIC } from './body.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const TAG = 0x5eed;

if (process.env.RECV_COST_CHILD) await child();
else await main();

async function child(): Promise<void> {
  const kind = process.env.RECV_COST_CHILD!;
  const url = process.env.RECV_COST_URL!;
  const n = Number(process.env.RECV_COST_SOCKETS);
  const key = Buffer.alloc(8);
  MAGIC.copy(key, 0);
  key.writeUInt32LE(TAG, 4);
  let frames = 0;
  let sum = 0;
  const onFrame = (buf: Buffer, start: number, end: number): void => {
    let at = buf.indexOf(key, start);
    if (at >= 0 && at + 24 > end) at = -1;
    if (at < 0) return;
    frames++;
    sum += buf.readUInt32LE(at + 8);
  };
  for (let i = 0; i < n; i++) {
    if (kind === 'raw') {
      await RawWebSocket.connect({ url, timeoutMs: 10_000, localAddress: '127.0.0.9', onMessage: (b, s, e) => onFrame(b, s, e) });
    } else {
      const ws = openSocket(url, 'x', '127.0.0.9');
      ws.on('message', (data: Buffer) => onFrame(data, 0, data.length));
      await new Promise<void>((res, rej) => {
        ws.once('open', () => res());
        ws.once('error', rej);
      });
    }
  }
  process.on('message', (m: { t: string }) => {
    if (m.t === 'mark') {
      const c = process.cpuUsage();
      process.send!({ t: 'mark', frames, cpuUs: c.user + c.system, sysUs: c.system, sum });
    }
  });
  process.send!({ t: 'ready' });
}

async function main(): Promise<void> {
  const SOCKETS = Number(opt('sockets', '2000'));
  const RATE = Number(opt('rate', '100000'));
  const PER_TURN = Number(opt('per-turn', '1'));
  const SECONDS = Number(opt('seconds', '5'));
  const RUNS = Number(opt('runs', '3'));
  await pinProcess(process.pid, 0);
  const app = uWS.App().ws('/*', { open: (ws) => void ws.subscribe('ch'), maxBackpressure: 64 * 1024 * 1024, idleTimeout: 0 });
  const port = await new Promise<number>((res) => app.listen('127.0.0.1', 0, (t) => res(uWS.us_socket_local_port(t))));
  const body = Buffer.alloc(100);
  MAGIC.copy(body, 0);
  body.writeUInt32LE(TAG, 4);
  let k = 0;
  const frame = (): Uint8Array => {
    body.writeUInt32LE(k++, 8);
    body.writeDoubleLE(Date.now() * 1000, 16);
    return encodeServerFrame({ t: 'msg', conv: 'c:01JBENCHCHANNEL0000000000', kind: 'channel', seq: k, mid: '01JBENCHMID00000000000000', from: 'owner', fdev: 'd1', body, ts: Date.now() });
  };
  const results: Record<string, { usPerFrame: number; sysShare: number; delivered: number }[]> = { ws: [], raw: [] };
  for (let run = 1; run <= RUNS; run++) {
    for (const kind of ['ws', 'raw']) {
      const c = fork(fileURLToPath(import.meta.url), args, { env: { ...process.env, RECV_COST_CHILD: kind, RECV_COST_URL: `ws://127.0.0.1:${port}/`, RECV_COST_SOCKETS: String(SOCKETS) }, execArgv: ['--import', 'tsx'] });
      const next = (t: string): Promise<{ frames: number; cpuUs: number; sysUs: number }> => new Promise((res) => c.once('message', (m: { t: string; frames: number; cpuUs: number; sysUs: number }) => m.t === t && res(m)));
      await next('ready');
      await pinProcess(c.pid!, 1);
      // Publishes per second so that sockets x publishes = RATE, in turns of PER_TURN.
      const turnsPerS = RATE / SOCKETS / PER_TURN;
      const t0 = Date.now();
      let turns = 0;
      const timer = setInterval(() => {
        const due = Math.floor(((Date.now() - t0) / 1000) * turnsPerS);
        for (; turns < due; turns++) for (let j = 0; j < PER_TURN; j++) app.publish('ch', frame(), true, false);
      }, 2);
      await new Promise((r) => setTimeout(r, 1000));
      c.send({ t: 'mark' });
      const a = await next('mark');
      await new Promise((r) => setTimeout(r, SECONDS * 1000));
      c.send({ t: 'mark' });
      const b = await next('mark');
      clearInterval(timer);
      const frames = b.frames - a.frames;
      const r = { usPerFrame: (b.cpuUs - a.cpuUs) / Math.max(1, frames), sysShare: (b.sysUs - a.sysUs) / Math.max(1, b.cpuUs - a.cpuUs), delivered: frames / SECONDS };
      results[kind]!.push(r);
      console.log(`run ${run} ${kind}: ${r.usPerFrame.toFixed(3)} µs/frame (${(r.sysShare * 100).toFixed(0)}% kernel), ${Math.round(r.delivered)} frames/s received of ${RATE} offered, ${PER_TURN} per turn, ${SOCKETS} sockets`);
      c.kill();
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
  const med = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
  const w = med(results.ws!.map((x) => x.usPerFrame));
  const r = med(results.raw!.map((x) => x.usPerFrame));
  console.log(`median: ws ${w.toFixed(3)} µs/frame, raw ${r.toFixed(3)} µs/frame, raw/ws ${(r / w).toFixed(2)}`);
  process.exit(0);
}
