/**
 * The client protocol spoken raw, for load generators: msgpack frames with the same msgpackr options
 * as src/protocol/codec.ts, but without the SDK and without schema validation of server frames
 * (decodeServerFrame runs a zod schema per frame, which would make the generator, not the server,
 * the bottleneck). Tokens are minted with the product's own minting code (HS256).
 */
import { Packr, Unpackr } from 'msgpackr';
import WebSocket from 'ws';
import { mintHs256Token } from '../../src/auth/mint.js';

/** Same encoding options as the product's codec (plain maps, no records, no extensions). */
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
});

// No copyBuffers: a generator reads each frame synchronously and keeps nothing from it.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false, int64AsType: 'number' });

export function pack(frame: Record<string, unknown>): Buffer {
  return packr.pack(frame);
}

export function unpack(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    const v: unknown = unpackr.unpack(bytes);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The frame type without decoding the frame. The server encodes `{ t, ... }` with `t` first, so a
 * frame starts fixmap, fixstr "t", fixstr type. Anything else falls back to a full decode. Lets a
 * generator skip decoding frames it only counts (receipts).
 */
export function frameType(b: Uint8Array): string {
  if ((b[0]! & 0xf0) === 0x80 && b[1] === 0xa1 && b[2] === 0x74 && (b[3]! & 0xe0) === 0xa0) {
    const len = b[3]! & 0x1f;
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(b[4 + i]!);
    return s;
  }
  const f = unpack(b);
  return typeof f?.['t'] === 'string' ? f['t'] : '?';
}

export const AUTH_SETTINGS = { issuer: 'ticks', audience: 'ticks', deviceClaim: 'dev' } as const;

export function mintToken(secret: string, user: string, device: string, ttlS = 3600): Promise<string> {
  return mintHs256Token({ secret, user, device, ttlS, settings: AUTH_SETTINGS });
}

/**
 * A raw `ws` client socket from `localAddress` (and `localPort`, when given): no compression, no
 * UTF-8 checks, and an all-zero masking key (which ws then skips applying). Masking protects proxies from cache poisoning by browser scripts; on a
 * loopback benchmark it would only spend the generator's CPU.
 */
export function openSocket(url: string, token: string, localAddress: string, localPort?: number): WebSocket {
  return new WebSocket(url, {
    headers: { authorization: `Bearer ${token}` },
    localAddress,
    // An explicit port: with port 0 the kernel searches for a free port on every bind(), and that
    // search grows with the ports already used on the address (checked here: the 2nd 4,000
    // connections from one address took 5.5x as long as the first; with explicit ports, flat).
    ...(localPort === undefined ? {} : { localPort }),
    perMessageDeflate: false,
    skipUTF8Validation: true,
    generateMask: (mask: Buffer) => {
      mask.fill(0);
    },
  });
}

/** Resolves with the hello frame, or rejects with the close code / error that came instead. */
export function awaitHello(ws: WebSocket, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('timeout'));
    }, timeoutMs);
    const onMessage = (data: Buffer): void => {
      const f = unpack(data);
      cleanup();
      if (f?.['t'] === 'hello') resolve(f);
      else reject(new Error(`first frame ${String(f?.['t'])} ${String(f?.['code'] ?? '')}`));
    };
    const onClose = (code: number): void => {
      cleanup();
      reject(new Error(`close ${code}`));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onUnexpected = (_req: unknown, res: { statusCode?: number }): void => {
      cleanup();
      reject(new Error(`http ${res.statusCode ?? '?'}`));
      ws.terminate();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      ws.off('error', onError);
      ws.off('unexpected-response', onUnexpected);
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.on('error', onError);
    ws.on('unexpected-response', onUnexpected);
  });
}
