/**
 * Opens a WebSocket with a given token and reports how the server answered: `hello` (accepted) or
 * the error frame and close code of a refusal. For tests of refusals the SDK would hide (it stops
 * at a 45xx close and does not say which token it used).
 */
import WebSocket from 'ws';
import { decodeServerFrame } from '../../src/protocol/codec.js';
import type { ServerFrame } from '../../src/protocol/client-frames.js';

export interface RawOutcome {
  hello: boolean;
  frames: ServerFrame[];
  closeCode: number | null;
  closeReason: string;
}

/** Connects, waits for hello (then closes) or for the server's close; rejects after `timeoutMs`. */
export function rawConnect(url: string, token: string, timeoutMs = 30_000): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/ws?v=1`, { headers: { authorization: `Bearer ${token}` } });
    ws.binaryType = 'nodebuffer';
    const out: RawOutcome = { hello: false, frames: [], closeCode: null, closeReason: '' };
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no hello and no close within ${timeoutMs} ms; frames: ${JSON.stringify(out.frames)}`));
    }, timeoutMs);
    ws.on('message', (data: Buffer) => {
      const r = decodeServerFrame(new Uint8Array(data));
      if (!r.ok) return;
      out.frames.push(r.frame);
      if (r.frame.t === 'hello') {
        out.hello = true;
        ws.close(1000);
      }
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      out.closeCode = code;
      out.closeReason = reason.toString();
      resolve(out);
    });
    ws.on('error', () => undefined);
  });
}

/** Resolves once the wall clock is in a later second than `ms` (tokens carry `iat` in seconds). */
export async function nextSecondAfter(ms: number): Promise<void> {
  while (Math.floor(Date.now() / 1000) * 1000 <= ms) await new Promise((r) => setTimeout(r, 50));
}
