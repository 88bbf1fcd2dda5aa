/**
 * One generator process of bench/connections: opens `count` authenticated connections from one
 * loopback source address (distinct user per connection, token minted here), waits for each
 * `hello`, holds them idle (ws answers the server's pings), and closes them when told. `open` may
 * come several times (the orchestrator opens in two halves to read the marginal cost).
 */
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import { Recorder } from '../lib/hdr.js';
import { awaitHello, mintToken, openSocket } from '../lib/wire.js';
import type { FromGenerator, OpenCmd, ToGenerator } from './messages.js';

const send = (m: FromGenerator): void => void process.send!(m);
/** Explicit source ports (bench/lib/wire.ts openSocket): above the privileged range, below 65536. */
const FIRST_PORT = 10_000;
const LAST_PORT = 65_535;
const sockets: WebSocket[] = [];
// Source ports handed out in order (see openSocket), across `open` calls; one in use is skipped.
let nextPort = FIRST_PORT;
const closedWhileHeld: Record<string, number> = {};
let closing = false;

async function open(cmd: OpenCmd): Promise<void> {
  const started = Date.now();
  const deadline = started + cmd.deadlineMs;
  const openedBefore = sockets.length;
  const failures: Record<string, number> = {};
  const hello = new Recorder();
  let next = 0;
  let failed = 0;
  const progress = setInterval(() => send({ t: 'progress', opened: sockets.length, failed }), 2000);
  const worker = async (): Promise<void> => {
    while (next < cmd.count && Date.now() < deadline) {
      const i = cmd.from + next++;
      try {
        const token = await mintToken(cmd.secret, `${cmd.prefix}${i}`, 'd', 24 * 3600);
        let ws: WebSocket | null = null;
        let t0 = 0;
        for (let attempt = 0; ws === null; attempt++) {
          if (nextPort > LAST_PORT) throw new Error('out of source ports');
          t0 = performance.now();
          const candidate = openSocket(cmd.url, token, cmd.localAddress, nextPort++);
          candidate.on('error', () => {}); // counted through the close or the awaitHello rejection
          try {
            await awaitHello(candidate, cmd.helloTimeoutMs);
            ws = candidate;
          } catch (err) {
            if (!/EADDRINUSE/.test((err as Error).message) || attempt >= 20) throw err;
          }
        }
        hello.record((performance.now() - t0) * 1000);
        ws.on('close', (code: number) => {
          if (!closing) closedWhileHeld[String(code)] = (closedWhileHeld[String(code)] ?? 0) + 1;
        });
        sockets.push(ws);
      } catch (err) {
        failed++;
        const key = (err as Error).message.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'addr');
        failures[key] = (failures[key] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, worker));
  clearInterval(progress);
  send({ t: 'opened', opened: sockets.length - openedBefore, failed, failures, ms: Date.now() - started, helloHist: hello.encode() });
}

async function closeAll(): Promise<void> {
  closing = true;
  const started = Date.now();
  // Close in slices so that 20k close handshakes do not all queue at once.
  for (let i = 0; i < sockets.length; i += 1000) {
    await Promise.all(
      sockets.slice(i, i + 1000).map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === ws.CLOSED) return resolve();
            const timer = setTimeout(() => {
              ws.terminate();
              resolve();
            }, 10_000);
            ws.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            ws.close(1000);
          }),
      ),
    );
  }
  send({ t: 'closed', closedByServerWhileHeld: closedWhileHeld, ms: Date.now() - started });
}

process.on('message', (m: ToGenerator) => {
  const run = (p: Promise<void>): void => {
    p.catch((err: unknown) => send({ t: 'fatal', error: (err as Error).stack ?? String(err) }));
  };
  if (m.t === 'open') run(open(m));
  else if (m.t === 'close') run(closeAll());
});
process.on('disconnect', () => process.exit(0));
