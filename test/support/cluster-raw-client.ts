/**
 * A raw protocol client for tests of frames the SDK does not speak (presence, typing): opens a
 * WebSocket with a token, runs one sync so the session is registered for live traffic, and records
 * every server frame.
 */
import WebSocket from 'ws';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema } from '../../src/config/schema.js';
import { decodeServerFrame, encodeClientFrame } from '../../src/protocol/codec.js';
import type { ClientFrame, ServerFrame } from '../../src/protocol/client-frames.js';
import { CLUSTER_SECRET } from './cluster-nodes.js';
import { waitUntil } from './e2e-client.js';

export class RawClient {
  readonly frames: ServerFrame[] = [];
  private ws: WebSocket | null = null;
  constructor(
    readonly node: { url: string; id: string },
    readonly user: string,
    readonly device: string,
    private readonly secret: string = CLUSTER_SECRET,
  ) {}

  async open(): Promise<void> {
    const token = await mintHs256Token({ secret: this.secret, user: this.user, device: this.device, ttlS: 600, settings: configSchema.parse({}).auth });
    const ws = new WebSocket(`${this.node.url}/ws?v=1&token=${token}`);
    this.ws = ws;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer) => {
      const r = decodeServerFrame(new Uint8Array(data));
      if (r.ok) this.frames.push(r.frame);
    });
    await waitUntil(() => this.frames.some((f) => f.t === 'hello'), `${this.label} hello`);
    // A first sync registers the session for live traffic (and in the session registry).
    this.send({ t: 'sync', id: 1 });
    await waitUntil(() => this.frames.some((f) => f.t === 'synced'), `${this.label} synced`);
  }

  get label(): string {
    return `${this.user}/${this.device}@${this.node.id}`;
  }

  send(f: ClientFrame): void {
    this.ws!.send(encodeClientFrame(f));
  }

  answer(id: number): ServerFrame | undefined {
    return this.frames.find((f) => (f.t === 'presence.state' || f.t === 'error') && f.id === id);
  }

  async request(f: ClientFrame & { id: number }): Promise<ServerFrame> {
    this.send(f);
    await waitUntil(() => this.answer(f.id) !== undefined, `${this.label} answer to ${f.t} ${f.id}`);
    return this.answer(f.id)!;
  }

  close(): void {
    this.ws?.close();
  }
}

