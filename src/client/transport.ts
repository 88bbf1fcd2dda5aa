import type { WebSocketConstructor, WebSocketFactory } from './websocket.js';

/**
 * How the SDK picks a WebSocket implementation. Browser-safe: the Node default (the `ws` package)
 * is only reached through a dynamic import of ./node-websocket.js, on Node.
 */

export interface ResolvedTransport {
  open: WebSocketFactory;
  /** True when `open` sends headers, so the token goes in `Authorization`; else in the query. */
  headers: boolean;
}

export interface TransportOptions {
  /** A factory that can send headers (takes precedence over webSocketImpl). */
  webSocketFactory?: WebSocketFactory;
  /** A standard WebSocket constructor; the token then goes in the `token` query parameter. */
  webSocketImpl?: WebSocketConstructor;
}

function isNode(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof proc?.versions?.node === 'string';
}

/**
 * Picks the socket implementation: the options first; then on Node the `ws` package (it can send
 * the Authorization header; Node 20 has no stable global WebSocket); then the global WebSocket.
 */
export async function resolveTransport(o: TransportOptions): Promise<ResolvedTransport> {
  if (o.webSocketFactory !== undefined) return { open: o.webSocketFactory, headers: true };
  if (o.webSocketImpl !== undefined) return fromConstructor(o.webSocketImpl);
  if (isNode()) {
    const { nodeWebSocketFactory } = await import('./node-websocket.js');
    return { open: await nodeWebSocketFactory(), headers: true };
  }
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global === undefined) throw new Error('no WebSocket implementation: pass webSocketImpl or webSocketFactory');
  return fromConstructor(global);
}

function fromConstructor(ctor: WebSocketConstructor): ResolvedTransport {
  return { open: (url) => new ctor(url), headers: false };
}

/** The payload of a message event as bytes, or undefined for text (not allowed by the protocol). */
export function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // ws may hand over a fragmented message as an array of Buffers when binaryType is 'fragments';
  // we set 'arraybuffer', so anything else is text or a Blob, neither of which the protocol sends.
  return undefined;
}
