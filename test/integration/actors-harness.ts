/**
 * In-process harness for the actor layer: N shard actor layers linked by a MemoryShardNetwork, the
 * embedded store in a temp directory (behind a wrapper that can hold or fail appends), a manual
 * clock, and fake devices whose ConnectionSink records every frame, as the gateway would deliver it.
 * At the end: request helpers (send a frame, wait for its answer) and fixtures for the membership
 * tests, which run on both store engines.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { ManualClock } from '../../src/actors/clock.js';
import { ClockEpochSource } from '../../src/actors/epochs.js';
import type { ConnectionSink, PushResult, SessionRef } from '../../src/actors/session.js';
import { createShardActors, type ShardActors, type ShardActorsOptions } from '../../src/actors/shard-actors.js';
import { MemoryShardNetwork } from '../../src/actors/shard-link.js';
import type { ActorsConfig } from '../../src/config/schema.js';
import type { ClientFrame, MsgFrame, ServerFrame, ServerFrameOf, ServerFrameType } from '../../src/protocol/client-frames.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import type { ConversationWriter, Store } from '../../src/store/store.js';
import type { AppendResult, MessageDraft } from '../../src/store/types.js';
import { scyllaFactory } from '../contract/store-engines.js';

export const NODE = 'node-a';

export const TEST_ACTORS_CONFIG: ActorsConfig = {
  mailboxCapacity: 1000,
  turnBudget: 64,
  idlePassivateMs: 60_000,
  maxCommitBatch: 256,
  deliveryRetryMs: 1000,
  deliveryMaxRetries: 3,
  cursorFlushMs: 50,
  syncPageSize: 2,
};

/**
 * Hooks on every writer the actors open: `hold` makes appends wait for `release()`; `failNext`
 * makes the next append fail (after committing its first `commitFirst` drafts for real).
 */
export class AppendControl {
  appends: number[] = [];
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  failNext: { error: Error & { committed?: AppendResult[] }; commitFirst: number } | null = null;

  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  release(): void {
    this.open?.();
    this.gate = null;
  }

  wrap(w: ConversationWriter): ConversationWriter {
    return {
      get conversationId() {
        return w.conversationId;
      },
      get epoch() {
        return w.epoch;
      },
      get head() {
        return w.head;
      },
      append: async (drafts: MessageDraft[]) => {
        this.appends.push(drafts.length);
        // The failure is picked when the append starts, so a held append is not the one that fails.
        const fail = this.failNext;
        this.failNext = null;
        if (this.gate) await this.gate;
        if (fail) {
          if (fail.commitFirst > 0) fail.error.committed = await w.append(drafts.slice(0, fail.commitFirst));
          throw fail.error;
        }
        return w.append(drafts);
      },
    };
  }
}

export class Device {
  readonly frames: ServerFrame[] = [];
  closed: { code: number; reason: string } | null = null;
  open = false;

  constructor(
    readonly world: World,
    readonly ref: SessionRef,
  ) {}

  get shard(): ShardActors {
    return this.world.shards[this.ref.shard]!;
  }

  connect(): this {
    this.open = true;
    this.closed = null;
    this.shard.handler.opened(this.ref);
    return this;
  }

  /** The socket closes from the client side (the gateway reports `closed`). */
  disconnect(code = 1000): void {
    if (!this.open) return;
    this.open = false;
    this.shard.handler.closed(this.ref, code);
  }

  send(frame: ClientFrame): void {
    this.shard.handler.frame(this.ref, frame);
  }

  of<K extends ServerFrameType>(t: K): ServerFrameOf<K>[] {
    return this.frames.filter((f): f is ServerFrameOf<K> => f.t === t);
  }

  msgs(conv?: string): MsgFrame[] {
    return this.of('msg').filter((m) => conv === undefined || m.conv === conv);
  }

  clear(): void {
    this.frames.length = 0;
  }
}

export class World {
  readonly clock = new ManualClock();
  readonly epochs = new ClockEpochSource(() => this.clock.now());
  readonly control = new AppendControl();
  readonly net: MemoryShardNetwork;
  readonly shards: ShardActors[] = [];
  /** The engine under the proxy: embedded in a temp directory unless the constructor got one. */
  readonly raw: Store;
  readonly store: Store;
  /**
   * Store methods to replace (e.g. a putMember that fails once, a crash between append and member
   * rows): the proxy calls `hooks[name]` instead of the engine's method while it is set.
   */
  readonly hooks: Partial<Record<keyof Store, (...args: never[]) => unknown>> = {};
  private readonly dir: string;
  private readonly devices = new Map<number, Device>();
  private nextConn = 1;

  constructor(
    shardCount = 2,
    config: Partial<ActorsConfig> = {},
    extra: Pick<Partial<ShardActorsOptions>, 'maxPendingPerDevice' | 'maxConcurrentReads' | 'attachTimeoutMs' | 'wake' | 'maxGroupMembers' | 'groupFanoutWindowMs' | 'channelFanout' | 'media'> = {},
    /** Another engine (e.g. a ScyllaStore from test/contract/store-engines.ts); opened and closed here. */
    rawStore?: Store,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'ticks-actors-'));
    this.raw = rawStore ?? new EmbeddedStore({ path: join(this.dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000 });
    const control = this.control;
    const raw = this.raw;
    const hooks = this.hooks;
    this.store = new Proxy(raw, {
      get(target, prop, receiver) {
        const hook = hooks[prop as keyof Store];
        if (hook !== undefined) return hook;
        if (prop === 'openWriter') {
          return async (conv: string, epoch: number) => control.wrap(await raw.openWriter(conv, epoch));
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    this.net = new MemoryShardNetwork(shardCount);
    for (let shard = 0; shard < shardCount; shard++) {
      const sink: ConnectionSink<ServerFrame> = {
        push: (conn, frame): PushResult => {
          const d = this.devices.get(conn.connId);
          if (d === undefined || !d.open) return 'closed';
          d.frames.push(frame);
          return 'sent';
        },
        close: (conn, code, reason) => {
          const d = this.devices.get(conn.connId);
          if (d === undefined || !d.open) return;
          d.closed = { code, reason };
          d.disconnect(code);
        },
      };
      const actors = createShardActors({
        shard,
        shardCount,
        nodeId: NODE,
        store: this.store,
        config: { ...TEST_ACTORS_CONFIG, ...config },
        sink,
        link: this.net.link(shard),
        clock: this.clock,
        epochs: this.epochs,
        ...extra,
      });
      this.net.attach(shard, actors.onLinkMessage);
      this.shards.push(actors);
    }
  }

  async open(): Promise<this> {
    await this.raw.open();
    return this;
  }

  device(user: string, device: string, shard: number): Device {
    const d = new Device(this, { node: NODE, shard, connId: this.nextConn++, user, device });
    this.devices.set(d.ref.connId, d);
    return d;
  }

  /** A new connection of an existing device (new connId, maybe another shard). */
  reconnect(d: Device, shard = d.ref.shard): Device {
    return this.device(d.ref.user, d.ref.device, shard);
  }

  /** Lets timers of the manual clock fire, then lets the resulting work settle. */
  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    await settle();
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.drain()));
    await this.raw.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Lets in-flight work settle: link hops (setImmediate), mailbox turns and store I/O. */
export async function settle(rounds = 3): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 20; i++) await new Promise<void>((res) => setImmediate(res));
    await new Promise<void>((res) => setTimeout(res, 5));
  }
}

/** Waits (real time) until `pred` holds; fails with `what` after `timeoutMs`. */
export async function until(pred: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise<void>((res) => setTimeout(res, 2));
  }
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

// ---- requests and fixtures shared by the membership tests (groups, channels, floors) ------------

export type Engine = 'embedded' | 'scylla';
export const ENGINES: readonly Engine[] = ['embedded', 'scylla'];

/** What the World constructor takes besides the shard count and the actors config. */
export type WorldExtra = ConstructorParameters<typeof World>[2];

/**
 * An opened World of `shards` shards on `engine`, closed when `t` ends. On scylla the store is a
 * ScyllaStore over the keyspace of this run named after `keyspace` (the shared Cassandra).
 */
export async function openWorld(t: Test, opts: { engine: Engine; keyspace: string; shards?: number; extra?: WorldExtra }): Promise<World> {
  const raw = opts.engine === 'scylla' ? scyllaFactory(opts.keyspace).create() : undefined;
  const w = await new World(opts.shards ?? 2, {}, opts.extra ?? {}, raw).open();
  t.teardown(() => w.close());
  return w;
}

/** One connected 'phone' per user, spread over the shards in turn. */
export function devices(w: World, users: string[]): Record<string, Device> {
  const out: Record<string, Device> = {};
  users.forEach((u, i) => (out[u] = w.device(u, 'phone', i % w.shards.length).connect()));
  return out;
}

/** The frames that answer a request: each carries the request's id. */
const ANSWERS = new Set<ServerFrameType>(['conv.ok', 'error', 'sent', 'members.page', 'receipts.state', 'history.page', 'synced']);

/**
 * How long a request waits for its answer. Generous on purpose: on scylla one request may wait on
 * several Cassandra writes, which a loaded box slows down; a wait that ends early costs nothing.
 */
export const ANSWER_TIMEOUT_MS = 15_000;

let lastRequestId = 0;
let lastCmid = 0;

/** A request id not used before in this process. */
export function requestId(): number {
  return ++lastRequestId;
}

/** A client message id not used before in this process: `prefix` and a counter. */
export function newCmid(prefix: string): string {
  return `${prefix}${++lastCmid}`;
}

/** Sends `frame` from `d` with a fresh id and waits for the frame that answers it. */
export async function req(d: Device, frame: Record<string, unknown>): Promise<ServerFrame> {
  const id = requestId();
  d.send({ ...frame, id } as unknown as ClientFrame);
  let answer: ServerFrame | undefined;
  const answers = (f: ServerFrame): boolean => ANSWERS.has(f.t) && (f as { id?: number }).id === id;
  await until(() => (answer = d.frames.find(answers)) !== undefined, `answer to ${String(frame.t)} ${id}`, ANSWER_TIMEOUT_MS);
  return answer!;
}

/** 'ok', or the code of the error that answered. */
export async function outcome(d: Device, frame: Record<string, unknown>): Promise<string> {
  const a = await req(d, frame);
  return a.t === 'error' ? a.code : 'ok';
}

/** The seq of the conv.ok answer (0: nothing written); any other answer fails `t` and gives -1. */
export async function ok(t: Test, d: Device, frame: Record<string, unknown>): Promise<number> {
  const a = await req(d, frame);
  if (a.t !== 'conv.ok') {
    t.fail(`${String(frame.t)} answered ${JSON.stringify(a)}`);
    return -1;
  }
  return a.seq;
}

/** conv.create with `cmid` (a fresh one by default), checked to answer conv.ok; the conversation id. */
export async function createConv(
  t: Test,
  d: Device,
  kind: 'group' | 'channel',
  members: string[],
  extra: Record<string, unknown> = {},
  cmid = newCmid('create-'),
): Promise<string> {
  const a = await req(d, { t: 'conv.create', cmid, kind, members, ...extra });
  t.equal(a.t, 'conv.ok', `create ${kind}`);
  return (a as { conv: string }).conv;
}
