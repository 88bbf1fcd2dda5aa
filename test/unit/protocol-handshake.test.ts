import t from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { connectUrl, parseHandshake } from '../../src/protocol/handshake.js';

const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';

t.test('a token in the Authorization header or the token parameter is accepted with v=1', async (t) => {
  t.same(parseHandshake('v=1', `Bearer ${jwt}`), { ok: true, version: 1, token: jwt });
  t.same(parseHandshake('?v=1', `bearer  ${jwt}`), { ok: true, version: 1, token: jwt }, 'scheme is case-insensitive');
  t.same(parseHandshake(`v=1&token=${jwt}`), { ok: true, version: 1, token: jwt });
  t.same(parseHandshake(`v=1&token=${jwt}`, ''), { ok: true, version: 1, token: jwt }, 'an empty header counts as absent');
  t.same(parseHandshake('v=1&token=a.b.c', `Bearer ${jwt}`), { ok: true, version: 1, token: jwt }, 'the header wins');
});

t.test('a missing or unsupported version is refused with 4504 before the token is looked at', async (t) => {
  for (const query of ['', 'v=2', 'v=0', 'v=1.0', 'v=01x', 'v=', `token=${jwt}`]) {
    t.match(parseHandshake(query, `Bearer ${jwt}`), { ok: false, close: CLOSE.unsupportedVersion, code: 'unsupported_version' }, query);
  }
});

t.test('a missing token is refused with 4506 and a malformed one with 4500', async (t) => {
  t.match(parseHandshake('v=1'), { ok: false, close: CLOSE.missingToken, code: 'unauthorized' });
  t.match(parseHandshake('v=1&token='), { ok: false, close: CLOSE.missingToken });
  t.match(parseHandshake('v=1', 'Basic dXNlcjpwYXNz'), { ok: false, close: CLOSE.badToken }, 'not a Bearer token');
  t.match(parseHandshake('v=1', 'Bearer'), { ok: false, close: CLOSE.badToken });
  t.match(parseHandshake('v=1', 'Bearer not-a-jwt'), { ok: false, close: CLOSE.badToken });
  t.match(parseHandshake('v=1&token=a.b.c.d'), { ok: false, close: CLOSE.badToken });
  t.match(parseHandshake(`v=1&token=${'a'.repeat(9000)}.b.c`), { ok: false, close: CLOSE.badToken }, 'too long');
});

t.test('connectUrl builds the connect URL', async (t) => {
  t.equal(connectUrl('wss://chat.example.com'), 'wss://chat.example.com/ws?v=1');
  t.equal(connectUrl('ws://localhost:8080/prefix/', 'a.b.c'), 'ws://localhost:8080/prefix/ws?v=1&token=a.b.c');
  const url = connectUrl('wss://h', jwt);
  t.same(parseHandshake(new URL(url).search), { ok: true, version: 1, token: jwt }, 'what the SDK builds, the server reads');
});
