import { MessageChannel, Worker, type MessagePort, type Transferable } from 'node:worker_threads';
import type { Logger } from './lib/log.js';
import type { ThreadMetrics } from './metrics/threads.js';
import type { MainToShard, ShardInit, ShardToMain } from './shard-control.js';

/**
 * The supervisor of a node's shard threads (main thread): starts them, keeps the MessageChannel
 * mesh between them whole, restarts a shard that exits unexpectedly (with backoff against crash
 * loops), routes their control requests, and stops them in drain order (src/node.ts).
 *
 * Mesh: every pair of shards shares one MessageChannel. When shard i restarts, it gets a fresh
 * channel to every peer and each live peer gets the other end in a `peer` message, replacing the
 * port to the dead incarnation (frames sent to it meanwhile are lost: the ShardLink is at-most-once).
 */
export interface SupervisorOptions {
  count: number;
  log: Logger;
  /** ShardInit of shard `index` minus what the supervisor fills in. */
  init(index: number): Omit<ShardInit, 'index' | 'shardCount' | 'generation' | 'peers'>;
  /** Handles requests (verify, metrics-request) from a shard. */
  onRequest(index: number, msg: ShardToMain, reply: (msg: MainToShard) => void): void;
  onRestart(index: number): void;
}

type Listener = (index: number, msg: ShardToMain | { t: 'exit'; code: number }) => void;

interface Slot {
  index: number;
  generation: number;
  worker: Worker | null;
  ready: boolean;
  /** The running worker reported a crash (`dying`) and will exit. */
  dying: boolean;
  restartTimer: NodeJS.Timeout | null;
  recentCrashes: number;
  lastCrashMs: number;
}

const RESTART_BACKOFF_MS = [100, 250, 500, 1000, 2000, 5000];
/** A shard that stayed up this long is no longer in a crash loop. */
const STABLE_AFTER_MS = 30_000;

export class ShardSupervisor {
  private readonly slots: Slot[];
  private stopping = false;
  private nextReq = 1;
  private readonly answers = new Map<number, (msg: ShardToMain) => void>();
  private readonly listeners = new Set<Listener>();

  constructor(private readonly o: SupervisorOptions) {
    this.slots = Array.from({ length: o.count }, (_, index) => ({ index, generation: 0, worker: null, ready: false, dying: false, restartTimer: null, recentCrashes: 0, lastCrashMs: 0 }));
  }

  /** Starts every shard; resolves when all accept, rejects (after stopping the rest) when one fails. */
  async start(): Promise<void> {
    const channels = this.slots.map(() => this.slots.map((): MessagePort | null => null));
    for (let i = 0; i < this.o.count; i++) {
      for (let j = i + 1; j < this.o.count; j++) {
        const ch = new MessageChannel();
        channels[i]![j] = ch.port1;
        channels[j]![i] = ch.port2;
      }
    }
    const started = this.slots.map((slot) => this.spawn(slot, channels[slot.index]!));
    const results = await Promise.allSettled(started);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // The shards that did start hold listen sockets: they must close them before their threads
      // end, or the process aborts.
      this.stopping = true;
      await this.broadcast({ t: 'drain', timeoutMs: 1000 }, 'drained', 5000);
      await Promise.all(this.slots.map((s) => s.worker?.terminate()));
      throw failed.reason;
    }
  }

  /** Shards that started and accept connections: not those starting, crashed (dying), exited or restarting. */
  get readyCount(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  /** Where shard `index` is in its life: `dying` is a crashed shard whose thread has not exited yet. */
  state(index: number): 'ready' | 'starting' | 'dying' | 'down' {
    const slot = this.slots[index];
    if (slot === undefined || slot.worker === null) return 'down';
    if (slot.ready) return 'ready';
    return slot.dying ? 'dying' : 'starting';
  }

  private live(): Slot[] {
    return this.slots.filter((s) => s.worker !== null && s.ready);
  }

  private spawn(slot: Slot, initialPeers?: (MessagePort | null)[]): Promise<void> {
    const peers: (MessagePort | null)[] = [];
    for (const other of this.slots) {
      if (other.index === slot.index) peers.push(null);
      else if (initialPeers) peers.push(initialPeers[other.index]!);
      else {
        const ch = new MessageChannel();
        peers.push(ch.port1);
        if (other.worker !== null) other.worker.postMessage({ t: 'peer', peer: slot.index, port: ch.port2 } satisfies MainToShard, [ch.port2]);
        else ch.port2.close();
      }
    }
    const workerData: ShardInit = { ...this.o.init(slot.index), index: slot.index, shardCount: this.o.count, generation: slot.generation, peers };
    const worker = startTsWorker(new URL('./shard-thread' + ext(import.meta.url), import.meta.url), workerData, peers.filter((p): p is MessagePort => p !== null));
    slot.worker = worker;
    slot.ready = false;
    slot.dying = false;
    return new Promise((resolve, reject) => {
      let settled = false;
      worker.on('message', (msg: ShardToMain) => {
        if (msg.t === 'ready' && !settled) {
          settled = true;
          slot.ready = true;
          resolve();
        } else if (msg.t === 'failed' && !settled) {
          settled = true;
          reject(new Error(`shard ${slot.index} failed to start: ${msg.message}`));
        }
        this.route(slot, msg);
      });
      worker.on('error', (err) => this.o.log.error({ err, shard: slot.index }, 'shard thread error'));
      worker.on('exit', (code) => {
        if (slot.worker === worker) {
          slot.worker = null;
          slot.ready = false;
        }
        for (const fn of this.listeners) fn(slot.index, { t: 'exit', code });
        if (!settled) {
          settled = true;
          reject(new Error(`shard ${slot.index} exited with code ${code} during start`));
          if (!initialPeers) this.crashed(slot, code);
        } else this.crashed(slot, code);
      });
    });
  }

  private crashed(slot: Slot, code: number): void {
    if (this.stopping) return;
    const now = Date.now();
    slot.recentCrashes = now - slot.lastCrashMs > STABLE_AFTER_MS ? 0 : slot.recentCrashes + 1;
    slot.lastCrashMs = now;
    const delayMs = RESTART_BACKOFF_MS[Math.min(slot.recentCrashes, RESTART_BACKOFF_MS.length - 1)]!;
    this.o.log.error({ shard: slot.index, code, delayMs }, 'shard thread exited unexpectedly; restarting it');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (this.stopping) return;
      slot.generation++;
      this.o.onRestart(slot.index);
      this.spawn(slot).then(
        () => this.o.log.info({ shard: slot.index, generation: slot.generation }, 'shard restarted'),
        (err: unknown) => this.o.log.error({ err, shard: slot.index }, 'shard restart failed'),
      );
    }, delayMs);
  }

  private route(slot: Slot, msg: ShardToMain): void {
    for (const fn of this.listeners) fn(slot.index, msg);
    switch (msg.t) {
      case 'verify':
      case 'metrics-request':
      case 'presence-call':
      case 'presence-publish':
        this.o.onRequest(slot.index, msg, (answer) => slot.worker?.postMessage(answer));
        return;
      case 'metrics':
        this.answers.get(msg.req)?.(msg);
        this.answers.delete(msg.req);
        return;
      case 'dying':
        // A crashed shard closes its sockets for a while before its thread exits: from now on it
        // is not ready (ticks_node_shards_up, readyShards), although its worker still runs.
        slot.ready = false;
        slot.dying = true;
        return;
      case 'ready':
      case 'failed':
      case 'stopped-accepting':
      case 'drained':
        return;
      default: {
        const never: never = msg;
        this.o.log.error({ msg: never }, 'unknown message from a shard');
      }
    }
  }

  /** Every live shard's metrics; a shard that does not answer within `timeoutMs` is left out. */
  async collectMetrics(timeoutMs: number): Promise<ThreadMetrics[]> {
    const parts = await Promise.all(
      this.live().map(
        (slot) =>
          new Promise<ThreadMetrics | null>((resolve) => {
            const req = this.nextReq++;
            const timer = setTimeout(() => {
              this.answers.delete(req);
              resolve(null);
            }, timeoutMs);
            this.answers.set(req, (msg) => {
              clearTimeout(timer);
              resolve(msg.t === 'metrics' ? msg.metrics : null);
            });
            slot.worker!.postMessage({ t: 'collect-metrics', req } satisfies MainToShard);
          }),
      ),
    );
    return parts.filter((p): p is ThreadMetrics => p !== null);
  }

  /** Sends `msg` to every running shard and waits (up to `timeoutMs`) for each to answer `until` or exit. */
  async broadcast(msg: MainToShard, until: ShardToMain['t'], timeoutMs: number): Promise<number[]> {
    const targets = this.slots.filter((s) => s.worker !== null);
    const pending = new Set(targets.map((s) => s.index));
    if (pending.size === 0) return [];
    let listener: Listener = () => {};
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      listener = (index, m) => {
        if ((m.t === until || m.t === 'exit') && pending.delete(index) && pending.size === 0) resolve();
      };
      this.listeners.add(listener);
      for (const s of targets) s.worker!.postMessage(msg);
    });
    clearTimeout(timer);
    this.listeners.delete(listener);
    return [...pending];
  }

  /** Test hook: crash shard `index` (only honoured when the node was started with test hooks). */
  /** Posts a control message to shard `index` if it runs (lost otherwise, like any thread frame). */
  post(index: number, msg: MainToShard): void {
    this.slots[index]?.worker?.postMessage(msg);
  }

  crash(index: number): void {
    this.slots[index]?.worker?.postMessage({ t: 'test-crash' } satisfies MainToShard);
  }

  /** Ends the threads. Call after drain: a thread must have closed its uWS sockets first. */
  async terminate(): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) if (s.restartTimer) clearTimeout(s.restartTimer);
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
  }

  /** From now on an exiting shard is not restarted. */
  beginStop(): void {
    this.stopping = true;
  }
}

function ext(url: string): string {
  return url.endsWith('.ts') ? '.ts' : '.js';
}

/**
 * Starts a worker on a module. From source (`.ts`, run through tsx) the worker's entry must register
 * tsx before importing the module: `--import tsx` in execArgv does not reach a worker's own entry.
 */
function startTsWorker(url: URL, workerData: unknown, transferList: Transferable[]): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData, transferList });
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, workerData, transferList });
}
