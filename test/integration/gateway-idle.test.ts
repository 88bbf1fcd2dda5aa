import t from 'tap';
import WebSocket from 'ws';
import { startTestNode, within } from '../support/gateway-harness.js';

const n = await startTestNode(t, { gateway: { idleTimeoutS: 8 } });

async function idle(autoPong: boolean): Promise<{ code: number | null; pings: number; ms: number }> {
  const token = await n.token('alice', autoPong ? 'pong' : 'mute');
  const ws = new WebSocket(`${n.base}/ws?v=1`, { headers: { authorization: `Bearer ${token}` }, autoPong });
  const t0 = Date.now();
  let pings = 0;
  ws.on('ping', () => pings++);
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  const code = await within(closed, 14_000, 'idle close').catch(() => null);
  ws.terminate();
  return { code, pings, ms: Date.now() - t0 };
}

t.test('idle: a client that answers nothing, not even pings, is closed with 4002; one that answers pings stays', async (t) => {
  const [mute, polite] = await Promise.all([idle(false), idle(true)]);
  t.equal(mute.code, 4002, 'closed with the documented idle-timeout code');
  t.ok(mute.pings >= 1, 'it was pinged first');
  t.ok(mute.ms >= 4000 && mute.ms < 13_000, `closed after ${mute.ms} ms`);
  t.equal(polite.code, null, 'the polite client is still open after 14 s');
  t.ok(polite.pings >= 2, `${polite.pings} pings answered`);
});
