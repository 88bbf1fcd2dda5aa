import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import t, { type Test } from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { connect, SECRET, startTestNode, within } from '../support/gateway-harness.js';

const ed = await generateKeyPair('EdDSA', { extractable: true });
const n = await startTestNode(t, { auth: { publicKeys: [await exportSPKI(ed.publicKey)] } });

t.test('a valid token in the Authorization header gets hello with user, device and limits', async (t) => {
  const c = connect(`${n.base}/ws?v=1`, { authorization: `Bearer ${await n.token('alice', 'phone')}` });
  const hello = await c.next();
  t.match(hello, { t: 'hello', v: 1, user: 'alice', device: 'phone', node: n.node.nodeId, limits: { maxFrameBytes: n.config.gateway.maxFrameBytes } });
  c.send({ t: 'ping', id: 3 });
  t.same(await c.next((f) => f.t === 'pong'), { t: 'pong', id: 3 });
  c.ws.close(1000);
  t.equal((await c.closed).code, 1000);
});

t.test('frames sent before hello are handled after it, in order', async (t) => {
  const c = connect(`${n.base}/ws?v=1`, { authorization: `Bearer ${await n.token('alice', 'tablet')}` });
  c.ws.on('open', () => {
    c.send({ t: 'ping', id: 1 });
    c.send({ t: 'ping', id: 2 });
  });
  t.match(await c.next(), { t: 'hello' });
  t.same(await c.next(), { t: 'pong', id: 1 });
  t.same(await c.next(), { t: 'pong', id: 2 });
  c.ws.close();
});

t.test('a token in the query string works too (browsers cannot set headers)', async (t) => {
  const c = connect(`${n.base}/ws?v=1&token=${await n.token('bob', 'web')}`);
  t.match(await c.next(), { t: 'hello', user: 'bob', device: 'web' });
  c.ws.close();
});

t.test('an EdDSA token is verified in the pool on the main thread', async (t) => {
  const token = await new SignJWT({ dev: 'laptop' })
    .setProtectedHeader({ alg: 'EdDSA' })
    .setSubject('carol')
    .setIssuer('ticks')
    .setAudience('ticks')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(ed.privateKey);
  const c = connect(`${n.base}/ws?v=1`, { authorization: `Bearer ${token}` });
  t.match(await c.next(), { t: 'hello', user: 'carol', device: 'laptop' });
  c.ws.close();
});

async function refused(t: Test, url: string, headers: Record<string, string>, close: number) {
  const c = connect(url, headers);
  const { code } = await within(c.closed, 5000, 'close');
  t.equal(code, close, `closed with ${close}`);
  t.match(c.frames, [{ t: 'error', code: close === CLOSE.unsupportedVersion ? 'unsupported_version' : 'unauthorized', retry: false }], 'one error frame says why');
}

t.test('missing, invalid and expired tokens close with their documented codes', async (t) => {
  await refused(t, `${n.base}/ws?v=1`, {}, CLOSE.missingToken);
  await refused(t, `${n.base}/ws?v=1`, { authorization: 'Bearer not-a-jwt' }, CLOSE.badToken);
  await refused(t, `${n.base}/ws?v=1`, { authorization: 'Basic abc' }, CLOSE.badToken);
  const forged = await new SignJWT({ dev: 'd' }).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory').setIssuer('ticks').setAudience('ticks').setExpirationTime('1h').sign(new TextEncoder().encode('w'.repeat(40)));
  await refused(t, `${n.base}/ws?v=1&token=${forged}`, {}, CLOSE.badToken);
  const expired = await new SignJWT({ dev: 'd' }).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuer('ticks').setAudience('ticks').setExpirationTime(Math.floor(Date.now() / 1000) - 600).sign(new TextEncoder().encode(SECRET));
  await refused(t, `${n.base}/ws?v=1`, { authorization: `Bearer ${expired}` }, CLOSE.tokenExpired);
});

t.test('a missing or unsupported protocol version closes with 4504', async (t) => {
  const token = await n.token('alice', 'phone');
  await refused(t, `${n.base}/ws?v=2`, { authorization: `Bearer ${token}` }, CLOSE.unsupportedVersion);
  await refused(t, `${n.base}/ws`, { authorization: `Bearer ${token}` }, CLOSE.unsupportedVersion);
});

t.test('refused attempts are counted by result', async (t) => {
  const text = await n.node.metrics();
  t.match(text, /ticks_gateway_connections_total\{result="missing_token"\} [1-9]/);
  t.match(text, /ticks_gateway_connections_total\{result="auth_failed"\} [1-9]/);
  t.match(text, /ticks_gateway_connections_total\{result="token_expired"\} 1/);
  t.match(text, /ticks_gateway_connections_total\{result="bad_version"\} 2/);
  t.match(text, /ticks_gateway_connections_total\{result="opened"\} 4/);
});
