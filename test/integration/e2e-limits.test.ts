/**
 * Scenario 5, on a real node with a raw `ws` client (not the SDK, which never sends such frames):
 * bad frames, oversize frames and bodies, and bad, expired or missing tokens and versions each get
 * the error frame and close code docs/PROTOCOL.md documents, and a refused send stores nothing.
 * Embedded store and Cassandra.
 */
import { encode } from 'msgpackr';
import t, { type Test } from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { directConversationId } from '../../src/protocol/ids.js';
import { connect, within, type Client } from '../support/gateway-harness.js';
import { e2eEngines, startE2eNode } from '../support/e2e-node.js';

const MAX_FRAME = 2048;
const MAX_BODY = 1024;
const WAIT_MS = 15_000;

/** Waits for the close and checks its code and the one error frame before it. */
async function refused(t: Test, c: Client, close: number, code: string): Promise<void> {
  const { code: got } = await within(c.closed, WAIT_MS, `close ${close}`);
  const errors = c.frames.filter((f) => f.t === 'error');
  t.equal(got, close, `closed with ${close}`);
  t.match(errors, [{ t: 'error', code, retry: false }], `one error frame ${code} before the close (frames: ${JSON.stringify(c.frames.map((f) => f.t))})`);
}

for (const engine of e2eEngines('e2e_limits')) {
  t.test(`${engine.name}: bad frames, oversize frames and bad tokens get their documented codes`, async (t) => {
    const n = await startE2eNode(t, engine, { gateway: { maxFrameBytes: MAX_FRAME, maxBodyBytes: MAX_BODY }, auth: { clockToleranceS: 0 } });
    const alice = n.user('alice');
    const bob = n.user('bob');
    const conv = directConversationId(alice, bob);
    const wsUrl = `${n.url}/ws?v=1`;
    const open = async (device: string): Promise<Client> => {
      const c = connect(wsUrl, { authorization: `Bearer ${await n.token(alice, device)}` });
      t.match(await c.next((f) => f.t === 'hello', WAIT_MS), { t: 'hello', limits: { maxFrameBytes: MAX_FRAME, maxBodyBytes: MAX_BODY } });
      return c;
    };
    const stored = async (): Promise<number[]> => {
      const c = await open('reader');
      c.send({ t: 'history', id: 1, conv, limit: 500 });
      const page = await c.next((f) => f.t === 'history.page' || f.t === 'error', WAIT_MS);
      c.ws.close(1000);
      if (page.t !== 'history.page') throw new Error(`history failed: ${JSON.stringify(page)}`);
      return page.msgs.map((m) => m.seq);
    };

    await t.test('undecodable bytes, a non-map, a map without t and a text frame get bad_frame and close 4503', async (t) => {
      for (const bytes of [new Uint8Array([0xc1, 0xff, 0x00]), encode([1, 2]), encode({ id: 1 }), '{"t":"ping","id":1}']) {
        const c = await open('phone');
        c.ws.send(bytes);
        await refused(t, c, CLOSE.protocolViolation, 'bad_frame');
      }
    });

    await t.test('an unknown type gets unknown_type (and a bad field invalid_field); the connection stays', async (t) => {
      const c = await open('phone');
      c.ws.send(encode({ t: 'teleport', id: 3 }));
      t.match(await c.next((f) => f.t === 'error', WAIT_MS), { t: 'error', code: 'unknown_type', id: 3, retry: false });
      c.ws.send(encode({ t: 'ping', id: 4, extra: 1 }));
      t.match(await c.next((f) => f.t === 'error', WAIT_MS), { t: 'error', code: 'invalid_field', id: 4, field: 'extra' });
      c.send({ t: 'ping', id: 5 });
      t.same(await c.next((f) => f.t === 'pong', WAIT_MS), { t: 'pong', id: 5 }, 'still open');
      c.ws.close(1000);
    });

    await t.test('a body over maxBodyBytes gets body_too_large for that send; nothing is stored and the connection stays', async (t) => {
      const c = await open('phone');
      c.send({ t: 'send', id: 7, to: bob, cmid: 'too-big', body: new Uint8Array(MAX_BODY + 1) });
      t.match(await c.next((f) => f.t === 'error' || f.t === 'sent', WAIT_MS), { t: 'error', code: 'body_too_large', id: 7, field: 'body', retry: false });
      c.send({ t: 'send', id: 8, to: bob, cmid: 'fits', body: new Uint8Array(MAX_BODY) });
      t.match(await c.next((f) => f.t === 'sent' || f.t === 'error', WAIT_MS), { t: 'sent', id: 8, seq: 1, dup: false }, 'a body of exactly maxBodyBytes is stored as seq 1');
      t.same(await stored(), [1], 'the store holds only that one');
      c.ws.close(1000);
    });

    await t.test('a frame over maxFrameBytes gets frame_too_large and close 4505, and is not stored', async (t) => {
      const c = await open('phone');
      c.send({ t: 'send', id: 9, to: bob, cmid: 'huge', body: new Uint8Array(MAX_FRAME + 100) });
      await refused(t, c, CLOSE.frameTooLarge, 'frame_too_large');
      t.same(await stored(), [1], 'nothing more was stored');
    });

    await t.test('a bad signature closes 4500, an expired token 4501, no token 4506', async (t) => {
      const forged = await n.token(alice, 'phone', { secret: 'another-secret-'.padEnd(48, 'y') });
      await refused(t, connect(wsUrl, { authorization: `Bearer ${forged}` }), CLOSE.badToken, 'unauthorized');
      await refused(t, connect(`${wsUrl}&token=${forged}`), CLOSE.badToken, 'unauthorized');
      const expired = await n.token(alice, 'phone', { nowS: Math.floor(Date.now() / 1000) - 3600, ttlS: 60 });
      await refused(t, connect(wsUrl, { authorization: `Bearer ${expired}` }), CLOSE.tokenExpired, 'unauthorized');
      await refused(t, connect(wsUrl), CLOSE.missingToken, 'unauthorized');
      await refused(t, connect(wsUrl, { authorization: 'Bearer not.a-jwt' }), CLOSE.badToken, 'unauthorized');
    });

    await t.test('a wrong or missing protocol version closes 4504', async (t) => {
      const token = await n.token(alice, 'phone');
      await refused(t, connect(`${n.url}/ws?v=2`, { authorization: `Bearer ${token}` }), CLOSE.unsupportedVersion, 'unsupported_version');
      await refused(t, connect(`${n.url}/ws`, { authorization: `Bearer ${token}` }), CLOSE.unsupportedVersion, 'unsupported_version');
    });

    await t.test('a token that expires during the session closes it with 4501', async (t) => {
      const token = await n.token(alice, 'watch', { ttlS: 4 }); // long enough to connect on a busy machine
      const c = connect(wsUrl, { authorization: `Bearer ${token}` });
      t.match(await c.next((f) => f.t === 'hello', WAIT_MS), { t: 'hello', device: 'watch' });
      await refused(t, c, CLOSE.tokenExpired, 'unauthorized');
    });
  });
}
