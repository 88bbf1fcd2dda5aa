/**
 * A private Redis for fault injection: like test/support/services/redis.ts (no persistence, tied
 * to this process), but it can be killed and started again empty on the same port, which is what
 * a Redis restart that loses all data looks like to the nodes (their clients reconnect to the same
 * address and find nothing).
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { aptInstall, commandExists, exitPromise, freePorts, spawnTied, stopServer } from '../services/process.js';

const READY_TIMEOUT_MS = 15_000;

export class RestartableRedis {
  #child: ChildProcess | undefined;
  readonly #dir = mkdtempSync(join(tmpdir(), 'ticks-chaos-redis-'));

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<RestartableRedis> {
    if (!commandExists('redis-server')) aptInstall(['redis-server'], 'redis-server is missing');
    const [port] = await freePorts(1);
    const r = new RestartableRedis(port!);
    await r.#launch();
    return r;
  }

  /** Kills Redis (SIGKILL: nothing is saved; it saves nothing anyway) and starts an empty one on the same port. Returns the downtime in ms. */
  async restartEmpty(downMs = 0): Promise<number> {
    const t0 = Date.now();
    const child = this.#child;
    if (child) {
      child.kill('SIGKILL');
      await stopServer(child, 1_000);
    }
    if (downMs > 0) await sleep(downMs);
    await this.#launch();
    return Date.now() - t0;
  }

  async stop(): Promise<void> {
    if (this.#child) await stopServer(this.#child, 5_000);
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #launch(): Promise<void> {
    const logPath = join(this.#dir, 'redis.log');
    // The port was just released by the killed server; a moment of "address in use" is retried.
    for (let attempt = 1; ; attempt++) {
      const logFd = openSync(logPath, 'a');
      const child = spawnTied(
        'redis-server',
        ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.#dir, '--daemonize', 'no'],
        { stdio: ['ignore', logFd, logFd] },
      );
      closeSync(logFd);
      this.#child = child;
      try {
        await waitForPong(this.url, exitPromise(child));
        return;
      } catch (err) {
        await stopServer(child, 1_000);
        const log = readFileSync(logPath, 'utf8');
        if (attempt < 20 && /address already in use/i.test(log.split('\n').slice(-5).join('\n'))) {
          await sleep(100);
          continue;
        }
        throw new Error(`private Redis did not start on port ${this.port}: ${(err as Error).message}\n${log.trim().split('\n').slice(-10).join('\n')}`);
      }
    }
  }
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
      if ((await client.ping()) === 'PONG') {
        await client.quit();
        return;
      }
    } catch (err) {
      lastError = (err as Error).message;
    }
    client.disconnect();
    await sleep(20);
  }
  throw new Error(`no PONG within ${READY_TIMEOUT_MS} ms (${lastError})`);
}
