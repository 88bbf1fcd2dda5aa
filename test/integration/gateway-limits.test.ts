import t from 'tap';
import { encode } from 'msgpackr';
import { CLOSE, PROTOCOL_ERROR_LIMIT } from '../../src/protocol/codes.js';
import { encodeClientFrame } from '../../src/protocol/codec.js';
import { connectAuthed, startTestNode, within } from '../support/gateway-harness.js';

const n = await startTestNode(t, { gateway: { maxFrameBytes: 1024, maxBodyBytes: 512, framesPerSecond: 5 } });

t.test('a frame over maxFrameBytes gets frame_too_large and close 4505, not a bare 1006', async (t) => {
  const c = await connectAuthed(n, 'alice', 'phone');
  c.ws.send(new Uint8Array(2000));
  t.equal((await within(c.closed, 5000, 'close')).code, CLOSE.frameTooLarge);
  t.match(c.frames.at(-1), { t: 'error', code: 'frame_too_large' });
});

t.test('a text frame gets bad_frame and close 4503', async (t) => {
  const c = await connectAuthed(n, 'alice', 'phone');
  c.ws.send('{"t":"ping","id":1}');
  t.equal((await within(c.closed, 5000, 'close')).code, CLOSE.protocolViolation);
  t.match(c.frames.at(-1), { t: 'error', code: 'bad_frame' });
});

t.test('undecodable bytes get bad_frame and close 4503', async (t) => {
  const c = await connectAuthed(n, 'alice', 'phone');
  c.ws.send(new Uint8Array([0xc1, 0xff, 0x00]));
  t.equal((await within(c.closed, 5000, 'close')).code, CLOSE.protocolViolation);
  t.match(c.frames.at(-1), { t: 'error', code: 'bad_frame' });
});

t.test("invalid frames get the codec's error code with the request id; repeated ones close 4503", async (t) => {
  const c = await connectAuthed(n, 'alice', 'phone');
  c.ws.send(encode({ t: 'ping', id: 9, extra: 1 }));
  t.match(await c.next((f) => f.t === 'error'), { t: 'error', code: 'invalid_field', id: 9, field: 'extra' });
  c.ws.send(encode({ t: 'teleport', id: 10 }));
  t.match(await c.next((f) => f.t === 'error'), { t: 'error', code: 'unknown_type', id: 10 });
  c.send({ t: 'send', id: 11, to: 'bob', cmid: 'c1', body: new Uint8Array(600) });
  t.match(await c.next((f) => f.t === 'error'), { t: 'error', code: 'body_too_large', id: 11 });
  // Stay under the rate limit (5/s, burst 10) so only the protocol-error limit is in play.
  for (let i = 0; i < PROTOCOL_ERROR_LIMIT; i++) {
    await new Promise((r) => setTimeout(r, 210));
    c.ws.send(encode({ t: 'ping', id: 100 + i, extra: true }));
  }
  t.equal((await within(c.closed, 5000, 'close')).code, CLOSE.protocolViolation);
});

t.test('over framesPerSecond: rate_limited errors, then close 4003 when the client keeps going', async (t) => {
  const c = await connectAuthed(n, 'alice', 'phone');
  for (let i = 0; i < 40; i++) c.ws.send(encodeClientFrame({ t: 'ping', id: i }));
  const { code } = await within(c.closed, 5000, 'close');
  const pongs = c.frames.filter((f) => f.t === 'pong').length;
  const limited = c.frames.filter((f) => f.t === 'error' && f.code === 'rate_limited');
  t.equal(pongs, 10, 'the burst (2x framesPerSecond) is served');
  t.ok(limited.length > 1, `${limited.length} rate_limited errors`);
  t.match(limited[0], { id: 10, retry: true }, 'the error answers the refused request');
  t.equal(code, CLOSE.rateLimited);
});

t.test('a client that backs off after rate_limited keeps its connection', async (t) => {
  const c = await connectAuthed(n, 'alice', 'tablet');
  for (let i = 0; i < 12; i++) c.ws.send(encodeClientFrame({ t: 'ping', id: i }));
  await c.next((f) => f.t === 'error' && f.code === 'rate_limited');
  await new Promise((r) => setTimeout(r, 1500));
  c.send({ t: 'ping', id: 99 });
  t.same(await c.next((f) => f.t === 'pong' && f.id === 99), { t: 'pong', id: 99 });
  c.ws.close(1000);
  t.equal((await c.closed).code, 1000);
});

t.test('frames and closes are counted', async (t) => {
  const text = await n.node.metrics();
  t.match(text, /ticks_gateway_frames_in_total\{type="invalid"\} [1-9]/);
  t.match(text, /ticks_gateway_frames_in_total\{type="ping"\} [1-9]/);
  t.match(text, /ticks_gateway_closes_total\{code="4505"\} 1/);
  t.match(text, /ticks_gateway_closes_total\{code="4003"\} 1/);
  t.match(text, /ticks_gateway_rejected_frames_total\{reason="rate_limited"\} [1-9]/);
});
