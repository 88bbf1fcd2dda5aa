import t, { type Test } from 'tap';
import { TicksClient, type ClientOptions, type StateEvent, type WebSocketConstructor } from '../../src/client/index.js';
import { CLOSE } from '../../src/protocol/codes.js';
import { FakeServer, waitFor } from './client-fake-server.js';

// Connecting, reconnecting and the outbox, against a fake server over real sockets.

async function setup(t: Test, opts: Partial<ClientOptions> = {}) {
  const server = await FakeServer.start();
  const client = new TicksClient({
    url: server.url,
    token: 'alice.cli.sig',
    random: () => 0.5,
    backoff: { baseMs: 20, capMs: 50 },
    gapRepairDelayMs: 20,
    ackDelayMs: 5,
    ...opts,
  });
  const states: StateEvent[] = [];
  client.on('state', (s) => states.push(s));
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  return { server, client, states };
}

t.test('connects with the token in the Authorization header, waits for hello, then syncs', async (t) => {
  const { server, client } = await setup(t);
  const hello = await client.connect();
  t.equal(hello.user, 'alice');
  t.equal(server.conns[0]!.authorization, 'Bearer alice.cli.sig', 'on Node the token travels in the header');
  t.match(server.conns[0]!.url, /^\/ws\?v=1$/, 'the URL carries the version and no token');
  await new Promise((resolve) => client.once('synced', resolve));
  t.equal(server.frames[0]!.frame.t, 'sync', 'the first frame is the sync');
  t.equal(client.caughtUp, true);
});

t.test('with a standard WebSocket constructor the token goes in the query (browsers)', async (t) => {
  const { WebSocket } = await import('ws');
  const server = await FakeServer.start();
  const client = new TicksClient({ url: `${server.url}/ws`, token: 'alice.web.sig', webSocketImpl: WebSocket as unknown as WebSocketConstructor });
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  await client.connect();
  t.equal(server.conns[0]!.authorization, undefined);
  t.equal(server.conns[0]!.url, '/ws?v=1&token=alice.web.sig', 'a trailing /ws in the URL is not doubled');
});

t.test('no reconnect after a 45xx close: a terminal closed event with the code', async (t) => {
  const { server, client, states } = await setup(t);
  await client.connect();
  const closed = new Promise<{ code: number }>((resolve) => client.once('closed', resolve));
  server.conns[0]!.ws.close(CLOSE.replaced, 'replaced');
  t.equal((await closed).code, 4502);
  t.equal(client.state, 'closed');
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.equal(server.conns.length, 1, 'never reconnected');
  t.notOk(states.some((s) => s.state === 'reconnecting'));
  await t.rejects(client.send({ to: 'bob' }, new Uint8Array([1])), { code: 'client.closed' }, 'a send after the end is refused');
});

t.test('a 45xx close before hello rejects connect()', async (t) => {
  const { server, client } = await setup(t);
  server.onConnect = (conn) => {
    conn.ws.close(CLOSE.badToken, 'bad token');
    return false;
  };
  await t.rejects(client.connect(), { code: 'client.closed' });
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(server.conns.length, 1);
});

t.test('reconnects with full-jitter backoff and asks the token provider each time', async (t) => {
  let tokens = 0;
  const { server, client, states } = await setup(t, { token: async () => `alice.cli.t${++tokens}` });
  server.onConnect = (conn) => {
    if (conn.index < 3) {
      conn.ws.close(CLOSE.draining, 'draining');
      return false;
    }
    return true;
  };
  await client.connect();
  const delays = states.filter((s) => s.state === 'reconnecting').map((s) => [s.attempt, s.delayMs, s.code]);
  // random() = 0.5: half of min(50, 20 * 2^attempt).
  t.same(delays, [
    [0, 10, 4000],
    [1, 20, 4000],
    [2, 25, 4000],
  ]);
  t.equal(tokens, 4, 'a fresh token for every attempt');
  t.same(server.conns.map((c) => c.token), ['alice.cli.t1', 'alice.cli.t2', 'alice.cli.t3', 'alice.cli.t4']);
  t.equal(states.at(-1)!.state, 'open');
});

t.test('4501 reconnects once with a refreshed token from the provider', async (t) => {
  const served: string[] = [];
  const { server, client } = await setup(t, { token: () => (served.push('x'), served.length === 1 ? 'alice.cli.old' : 'alice.cli.new') });
  server.onConnect = (conn) => {
    if (conn.token.endsWith('old')) {
      conn.ws.close(CLOSE.tokenExpired, 'token expired');
      return false;
    }
    return true;
  };
  await client.connect();
  t.same(server.conns.map((c) => c.token), ['alice.cli.old', 'alice.cli.new']);
});

t.test('4501 with a fixed token is terminal', async (t) => {
  const { server, client } = await setup(t);
  server.onConnect = (conn) => {
    conn.ws.close(CLOSE.tokenExpired, 'token expired');
    return false;
  };
  await t.rejects(client.connect(), { code: 'client.closed' });
  t.equal(server.conns.length, 1);
});

t.test('the outbox retries under the same cmid after a dropped connection; the server stores it once', async (t) => {
  const { server, client } = await setup(t);
  server.intercept = (frame, conn) => {
    if (frame.t !== 'send' || conn.index !== 0) return false;
    server.handle(frame, { ...conn, ws: { send: () => undefined } as never }); // stored, answer lost
    conn.ws.terminate();
    return true;
  };
  const sent: unknown[] = [];
  client.on('sent', (e) => sent.push(e));
  await client.connect();
  const result = await client.send({ to: 'bob' }, new TextEncoder().encode('hi'), { cmid: 'c-1' });
  t.match(result, { conv: 'd:alice:bob', seq: 1 });
  const sends = server.framesOf('send');
  t.equal(sends.length, 2, 'sent again after the reconnect');
  t.ok(sends.every((f) => f.cmid === 'c-1'), 'every attempt carried the same cmid');
  t.equal(server.conns.length, 2, 'reconnected once');
  t.equal(server.logs.get('d:alice:bob')!.length, 1, 'no duplicate message');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(sent.length, 1, 'one sent event');
  t.same(client.pendingSends(), []);
  await waitFor(() => server.dacks.get('cli|d:alice:bob') === 1, 'the own message counted as received and dacked');
});

t.test('a resend answered sent{dup} settles the send with the original seq', async (t) => {
  const { server, client } = await setup(t);
  let dropped = false;
  server.intercept = (frame, conn) => {
    // This server's sync does not return the device's own messages, so only `sent` can settle it.
    if (frame.t === 'sync') {
      server.push(conn, { t: 'synced', id: frame.id, heads: {}, reads: {}, more: false });
      return true;
    }
    if (frame.t !== 'send' || dropped) return false;
    dropped = true;
    server.handle(frame, { ...conn, ws: { send: () => undefined } as never });
    conn.ws.close(4004, 'internal error');
    return true;
  };
  await client.connect();
  const result = await client.send({ conv: 'g:team' }, new Uint8Array([7]));
  t.match(result, { conv: 'g:team', seq: 1, dup: true });
  const sends = server.framesOf('send');
  t.equal(sends.length, 2);
  t.equal(sends[0]!.cmid, sends[1]!.cmid);
});

t.test('a non-retryable error rejects the send; a retryable one is retried', async (t) => {
  const { server, client } = await setup(t);
  let storeFailures = 1;
  server.intercept = (frame, conn) => {
    if (frame.t !== 'send') return false;
    if (frame.conv === 'g:secret') {
      server.push(conn, { t: 'error', id: frame.id, code: 'not_member', msg: 'not a member', retry: false });
      return true;
    }
    if (storeFailures-- > 0) {
      server.push(conn, { t: 'error', id: frame.id, code: 'store_unavailable', msg: 'slow store', retry: true });
      return true;
    }
    return false;
  };
  const failed: string[] = [];
  client.on('send-failed', (e) => failed.push(e.error.code));
  await client.connect();
  await t.rejects(client.send({ conv: 'g:secret' }, new Uint8Array([1])), { code: 'not_member', retryable: false });
  t.same(failed, ['not_member']);
  t.equal(server.framesOf('send').length, 1, 'not retried');
  const ok = await client.send({ conv: 'g:team' }, new Uint8Array([2]), { cmid: 'retry-me' });
  t.equal(ok.seq, 1);
  t.same(server.framesOf('send').slice(1).map((f) => f.cmid), ['retry-me', 'retry-me']);
  t.same(client.pendingSends(), []);
});

t.test('local checks reject bad sends before they reach the server', async (t) => {
  const { server, client } = await setup(t);
  server.limits = { ...server.limits, maxBodyBytes: 4 };
  await client.connect();
  await t.rejects(client.send({ to: 'bad:user' }, new Uint8Array(1)), { code: 'invalid_field', field: 'to' });
  await t.rejects(client.send({ conv: 'g:x' }, new Uint8Array(5)), { code: 'body_too_large' });
  await t.rejects(client.send({ conv: 'g:x' }, new Uint8Array(1), { cmid: 'has space' }), { code: 'invalid_field', field: 'cmid' });
  t.equal(server.framesOf('send').length, 0);
});

t.test('sends respect hello.limits.maxInflightRequests', async (t) => {
  const { server, client } = await setup(t);
  server.limits = { ...server.limits, maxInflightRequests: 8 };
  let open = 0;
  let peak = 0;
  server.intercept = (frame, conn) => {
    if (frame.t !== 'send') return false;
    peak = Math.max(peak, ++open);
    setTimeout(() => {
      open--;
      server.handle(frame, conn);
    }, 5);
    return true;
  };
  await client.connect();
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => client.send({ conv: 'g:team' }, new Uint8Array([i]))));
  t.same(results.map((r) => r.seq).sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 1));
  t.ok(peak <= 8 - 4, `at most limit minus the reserve in flight (peak ${peak})`);
});

t.test('sends made while disconnected wait in the outbox', async (t) => {
  const { server, client } = await setup(t);
  const pending = client.send({ to: 'bob' }, new Uint8Array([1]));
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(client.pendingSends().length, 1);
  await client.connect();
  t.equal((await pending).seq, 1);
  t.equal(server.framesOf('send').length, 1);
});

t.test('close 4003 (rate limited) adds a floor to the backoff', async (t) => {
  const { server, client, states } = await setup(t, { rateLimitedFloorMs: 30 });
  server.onConnect = (conn) => {
    if (conn.index > 0) return true;
    conn.ws.close(CLOSE.rateLimited, 'rate limited');
    return false;
  };
  await client.connect();
  t.same(states.filter((s) => s.state === 'reconnecting').map((s) => s.delayMs), [30 + 10]);
});

t.test('an idle client pings; a missing pong drops the connection and it reconnects', async (t) => {
  const { server, client, states } = await setup(t, { pingTimeoutMs: 50 });
  server.limits = { ...server.limits, idleTimeoutS: 0.1 };
  server.intercept = (frame, conn) => frame.t === 'ping' && conn.index === 0; // the first path is dead
  await client.connect();
  await waitFor(() => server.conns.length === 2 && client.state === 'open', 'a reconnect after the lost pong');
  t.ok(server.frames.some((f) => f.conn === 0 && f.frame.t === 'ping'), 'pinged when idle');
  t.match(states.find((s) => s.state === 'reconnecting'), { code: 1006 });
  await waitFor(() => server.frames.some((f) => f.conn === 1 && f.frame.t === 'ping'), 'pings on the new connection');
  await new Promise((resolve) => setTimeout(resolve, 120));
  t.equal(server.conns.length, 2, 'answered pings keep the connection');
});
