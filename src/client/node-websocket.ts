/**
 * Node only: the default socket implementation, the `ws` package. Loaded by transport.ts through a
 * dynamic import, so browser bundles never need `ws`.
 */
import type { WebSocketFactory, WebSocketLike } from './websocket.js';

/** A factory opening `ws` sockets that send the given headers (the token in `Authorization`). */
export async function nodeWebSocketFactory(): Promise<WebSocketFactory> {
  let mod: typeof import('ws');
  try {
    mod = await import('ws');
  } catch (err) {
    throw new Error('the ticks client needs the `ws` package on Node (npm install ws), or pass webSocketImpl', { cause: err });
  }
  const WebSocket = mod.WebSocket;
  // ws's event handler types are its own classes; they are structurally what WebSocketLike reads.
  return (url, headers) => new WebSocket(url, { headers, perMessageDeflate: false }) as unknown as WebSocketLike;
}
