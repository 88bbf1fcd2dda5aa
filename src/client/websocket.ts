/** The slice of the standard WebSocket interface the SDK uses (browsers, `ws`, or a test double). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: never) => void) | null;
}

/** A standard WebSocket constructor (the browser global, or a compatible one). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * Opens a socket. `headers` are set when the implementation can send them (Node); the token then
 * travels in `Authorization` rather than in the URL, where proxies and logs might keep it.
 */
export type WebSocketFactory = (url: string, headers: Record<string, string>) => WebSocketLike;
