/**
 * Helpers for the gateway integration tests: a node on a free port with the embedded store in a
 * temp dir, and a small WebSocket client (the `ws` package) that decodes server frames and records
 * the close code.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { startNode, type RunningNode } from '../../src/node.js';
import type { ClientFrame, ServerFrame } from '../../src/protocol/client-frames.js';
import { decodeServerFrame, encodeClientFrame } from '../../src/protocol/codec.js';

export const SECRET = 's'.repeat(48);

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestNode {
  node: RunningNode;
  config: Config;
  base: string;
  http: string;
  token(user: string, device: string, ttlS?: number): Promise<string>;
}

export async function startTestNode(
  t: Teardown,
  sections: { gateway?: Partial<Config['gateway']>; auth?: Partial<Config['auth']> } = {},
): Promise<TestNode> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-gw-'));
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: 'silent' },
    store: { embedded: { path: join(dir, 'store') } },
    gateway: { host: '127.0.0.1', port: 0, shards: 2, ...sections.gateway },
    auth: { hs256Secret: SECRET, ...sections.auth },
  });
  const node = await startNode(config, { testHooks: true });
  t.teardown(async () => {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    node,
    config,
    base: `ws://127.0.0.1:${node.port}`,
    http: `http://127.0.0.1:${node.port}`,
    token: (user, device, ttlS = 3600) => mintHs256Token({ secret: SECRET, user, device, ttlS, settings: config.auth }),
  };
}

export interface Client {
  ws: WebSocket;
  frames: ServerFrame[];
  /** Resolves with the next frame matching `pred` (already received ones count). */
  next(pred?: (f: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
  closed: Promise<{ code: number; reason: string }>;
  send(frame: ClientFrame): void;
}

export function connect(url: string, headers: Record<string, string> = {}): Client {
  const ws = new WebSocket(url, { headers });
  const frames: ServerFrame[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) throw new Error('server sent a text frame');
    const r = decodeServerFrame(new Uint8Array(data));
    if (!r.ok) throw new Error(`undecodable server frame: ${r.msg}`);
    frames.push(r.frame);
    for (const w of waiters.splice(0)) w();
  });
  ws.on('error', () => {}); // the close event that follows carries what the tests check
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of waiters.splice(0)) w();
    });
  });
  let seen = 0;
  return {
    ws,
    frames,
    closed,
    send: (frame) => ws.send(encodeClientFrame(frame)),
    async next(pred = () => true, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (seen < frames.length) {
          const f = frames[seen++]!;
          if (pred(f)) return f;
        }
        if (ws.readyState === WebSocket.CLOSED) throw new Error('socket closed before the expected frame');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('timed out waiting for a frame');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
}

/** Connects with a fresh token for (user, device) and waits for hello. */
export async function connectAuthed(n: TestNode, user: string, device: string): Promise<Client> {
  const c = connect(`${n.base}/ws?v=1`, { authorization: `Bearer ${await n.token(user, device)}` });
  await c.next((f) => f.t === 'hello');
  return c;
}

/** `p`, or a rejection naming `what` after `ms`. The timer never keeps the test process alive. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
