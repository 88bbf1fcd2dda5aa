/**
 * A throw-away Redis for one test run: Debian's redis-server on a free loopback port, no
 * persistence, its files in a temp folder that stop() removes.
 */
import { openSync, closeSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { aptInstall, commandExists, exitPromise, freePorts, isRunning, spawnTied, stopServer } from './process.js';

export interface RedisService {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const START_ATTEMPTS = 3;

export async function startRedis(): Promise<RedisService> {
  if (!commandExists('redis-server')) aptInstall(['redis-server'], 'redis-server is missing');
  let lastError: unknown;
  // A port picked by listen(0) can be taken before redis binds it; try again on a fresh one.
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce();
    } catch (err) {
      lastError = err;
      if (!(err instanceof Error && /address already in use/i.test(err.message))) break;
    }
  }
  throw lastError;
}

async function startOnce(): Promise<RedisService> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-redis-'));
  const logPath = join(dir, 'redis.log');
  const [port] = await freePorts(1);
  const logFd = openSync(logPath, 'a');
  const child = spawnTied(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'],
    { stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);

  const stop = async (): Promise<void> => {
    await stopServer(child, STOP_GRACE_MS);
    rmSync(dir, { recursive: true, force: true });
  };

  const url = `redis://127.0.0.1:${port}`;
  try {
    await waitForPong(url, exitPromise(child));
  } catch (err) {
    const log = readFileSync(logPath, 'utf8').trim().split('\n').slice(-20).join('\n');
    await stop();
    throw new Error(`Redis did not start on port ${port}: ${(err as Error).message}\n${log}`);
  }
  if (child.pid === undefined || !isRunning(child)) throw new Error('Redis exited right after start');
  return { url, pid: child.pid, stop };
}

async function waitForPong(url: string, exited: Promise<string>): Promise<void> {
  let exitReason: string | undefined;
  void exited.then((reason) => (exitReason = reason));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no answer';
  while (Date.now() < deadline) {
    if (exitReason) throw new Error(`redis-server ${exitReason}`);
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      const pong = await client.ping();
      if (pong === 'PONG') {
        await client.quit();
        return;
      }
      lastError = `PING answered ${pong}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    client.disconnect();
    await sleep(20);
  }
  throw new Error(`no PONG within ${READY_TIMEOUT_MS} ms (${lastError})`);
}
