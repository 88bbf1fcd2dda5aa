/**
 * End-to-end harness: a real node (`startNode`, 2 shard threads, a real port) on either store
 * engine, HS256 tokens minted with the project's minting, and recording SDK clients (e2e-client.ts).
 *
 * One test body, two engines: a test file loops over `e2eEngines(suffix)` and registers the same
 * test once per engine. The embedded engine gets a fresh temp directory per node; the scylla engine
 * uses one keyspace per test file (`uniqueKeyspace(suffix)`), so tests of one file that share it must
 * use distinct user ids (`E2eNode.user`). Cassandra is required: without it the scylla tests fail
 * with a message that says how to get it.
 *
 * Set TICKS_E2E_ENGINE=embedded (or scylla) to run one engine only while debugging.
 * Set TICKS_E2E_LOG=debug (or info, warn) to see the node's logs (JSON on stdout, mixed with TAP).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema, type ActorsConfig, type AuthConfig, type Config, type GatewayConfig } from '../../src/config/schema.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { E2eClient, type E2eClientOptions } from './e2e-client.js';
import { requireCassandra, uniqueKeyspace } from './env.js';

export const E2E_SECRET = 'e2e-secret-'.padEnd(48, 'x');
/** Small buckets, so ordinary tests cross partition boundaries (paging, sync and history). */
export const E2E_BUCKET_SIZE = 8;

export type EngineName = 'embedded' | 'scylla';

export interface E2eEngine {
  name: EngineName;
  /** Keyspace of this test file (scylla only). */
  keyspace?: string;
}

/** The engines every scenario runs on: embedded always, scylla on the test Cassandra. */
export function e2eEngines(fileSuffix: string): E2eEngine[] {
  const all: E2eEngine[] = [{ name: 'embedded' }, { name: 'scylla', keyspace: uniqueKeyspace(fileSuffix) }];
  // TICKS_E2E_ENGINE=embedded|scylla narrows a run while debugging; `npm test` always runs both.
  const only = process.env.TICKS_E2E_ENGINE;
  return only ? all.filter((e) => e.name === only) : all;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface E2eNodeOptions {
  gateway?: Partial<GatewayConfig>;
  actors?: Partial<ActorsConfig>;
  auth?: Partial<AuthConfig>;
}

let nodeCounter = 0;

/** A running node plus everything a test needs to talk to it. */
export class E2eNode {
  node: RunningNode;
  readonly clients: E2eClient[] = [];
  /** Distinguishes the users of this node from other tests' users in a shared keyspace. */
  readonly tag: string;

  constructor(
    readonly engine: E2eEngine,
    public config: Config,
    node: RunningNode,
    private readonly dir: string,
  ) {
    this.node = node;
    this.tag = `n${++nodeCounter}${Math.random().toString(36).slice(2, 6)}`;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.node.port}`;
  }

  /** A user id unique to this node's test (`alice` -> `alice.n1ab3f`). */
  user(name: string): string {
    return `${name}.${this.tag}`;
  }

  token(user: string, device: string, opts: { ttlS?: number; nowS?: number; secret?: string } = {}): Promise<string> {
    return mintHs256Token({
      secret: opts.secret ?? E2E_SECRET,
      user,
      device,
      ttlS: opts.ttlS ?? 3600,
      settings: this.config.auth,
      ...(opts.nowS === undefined ? {} : { nowS: opts.nowS }),
    });
  }

  /** A recording SDK client for (user, device); not connected until `connect()`. Closed at teardown. */
  client(user: string, device: string, opts: Omit<E2eClientOptions, 'url' | 'token' | 'label'> = {}): E2eClient {
    const c = new E2eClient({ ...opts, url: this.url, token: () => this.token(user, device), label: `${user}/${device}` });
    this.clients.push(c);
    return c;
  }

  /** Drains and stops the node (clients stay and keep trying to reconnect). */
  async stop(): Promise<void> {
    await this.node.stop();
  }

  /** Starts the node again on the same port and the same store (directory or keyspace). */
  async start(): Promise<void> {
    this.config = { ...this.config, gateway: { ...this.config.gateway, port: this.node.port } };
    this.node = await startNode(this.config, { testHooks: true });
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.node.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a node with 2 shards on a free port, on `engine`; stopped (and its clients closed) at teardown. */
export async function startE2eNode(t: Teardown, engine: E2eEngine, opts: E2eNodeOptions = {}): Promise<E2eNode> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-e2e-'));
  const store =
    engine.name === 'embedded'
      ? { engine: 'embedded', bucketSize: E2E_BUCKET_SIZE, embedded: { path: join(dir, 'store') } }
      : (() => {
          const cassandra = requireCassandra();
          return {
            engine: 'scylla',
            bucketSize: E2E_BUCKET_SIZE,
            scylla: {
              contactPoints: cassandra.contactPoints,
              localDataCenter: cassandra.localDataCenter,
              keyspace: engine.keyspace,
              requestTimeoutMs: 20_000,
              connectTimeoutMs: 10_000,
            },
          };
        })();
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: process.env.TICKS_E2E_LOG ?? 'silent' },
    store,
    gateway: { host: '127.0.0.1', port: 0, shards: 2, ...opts.gateway },
    auth: { hs256Secret: E2E_SECRET, algorithms: ['HS256'], ...opts.auth },
    actors: { ...opts.actors },
  });
  let node: RunningNode;
  try {
    node = await startNode(config, { testHooks: true });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`startNode failed on the ${engine.name} engine: ${(err as Error).message}`, { cause: err });
  }
  const n = new E2eNode(engine, config, node, dir);
  t.teardown(() => n.close());
  return n;
}
