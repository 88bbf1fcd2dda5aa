import t, { type Test } from 'tap';
import { TicksClient, UNRESPONSIVE, type ClientOptions, type SentEvent, type StateEvent } from '../../src/client/index.js';
import { FakeServer } from './client-fake-server.js';

// Liveness: a node that stops answering (SIGSTOP, half-open TCP) while requests are outstanding is
// probed with a ping and, when nothing comes back, dropped for a reconnect.

async function setup(t: Test, opts: Partial<ClientOptions> = {}) {
  const server = await FakeServer.start();
  const client = new TicksClient({
    url: server.url,
    token: 'alice.cli.sig',
    random: () => 0.5,
    backoff: { baseMs: 20, capMs: 50 },
    ackDelayMs: 5,
    ...opts,
  });
  const states: StateEvent[] = [];
  const sent: SentEvent[] = [];
  client.on('state', (s) => states.push(s));
  client.on('sent', (e) => sent.push(e));
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  await client.connect();
  await new Promise((resolve) => client.once('synced', resolve));
  return { server, client, states, sent };
}

const body = new TextEncoder().encode('hi');
const typesOn = (server: FakeServer, conn: number): string[] => server.frames.filter((f) => f.conn === conn).map((f) => f.frame.t);

t.test('a frozen server while a send waits: ping, close, reconnect, the send is acked once under its cmid', async (t) => {
  const { server, client, states, sent } = await setup(t, { responseTimeoutMs: 100, pongTimeoutMs: 100 });
  server.freeze(server.conns[0]!);
  const result = await client.send({ to: 'bob' }, body, { cmid: 'c-frozen' });
  t.match(result, { conv: 'd:alice:bob', seq: 1, dup: false });
  t.same(typesOn(server, 0), ['sync', 'send', 'ping'], 'the unanswered send was followed by one probe ping on the frozen connection');
  t.equal(server.conns.length, 2, 'reconnected once');
  const reconnecting = states.filter((s) => s.state === 'reconnecting');
  t.equal(reconnecting.length, 1);
  t.match(reconnecting[0], { code: 1006, reason: UNRESPONSIVE }, 'the state event says why');
  const sends = server.frames.filter((f) => f.frame.t === 'send');
  t.same(sends.map((f) => f.conn), [0, 1], 'sent again on the new connection');
  t.ok(server.framesOf('send').every((f) => f.cmid === 'c-frozen'), 'every attempt carried the same cmid');
  t.equal(server.logs.get('d:alice:bob')!.length, 1, 'stored once');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(sent.map((e) => e.cmid), ['c-frozen'], 'one sent event');
  t.same(client.pendingSends(), []);
  t.equal(client.state, 'open');
});

t.test('a slow server that answers pings keeps the connection', async (t) => {
  const { server, client, states } = await setup(t, { responseTimeoutMs: 100, pongTimeoutMs: 400 });
  server.intercept = (frame, conn) => {
    if (frame.t !== 'send') return false;
    setTimeout(() => server.handle(frame, conn), 800); // far beyond responseTimeoutMs
    return true;
  };
  const result = await client.send({ to: 'bob' }, body, { cmid: 'c-slow' });
  t.match(result, { seq: 1, dup: false });
  t.ok(server.framesOf('ping').length >= 1, 'probed while the answer was late');
  t.equal(server.conns.length, 1, 'no reconnect');
  t.notOk(states.some((s) => s.state === 'reconnecting'));
  t.same(server.framesOf('send').map((f) => f.cmid), ['c-slow'], 'sent once');
});

t.test('responseTimeoutMs 0 disables the probe', async (t) => {
  const { server, client } = await setup(t, { responseTimeoutMs: 0, pongTimeoutMs: 50 });
  server.freeze(server.conns[0]!);
  client.send({ to: 'bob' }, body, { cmid: 'c-off' }).catch(() => undefined); // rejected by close() in teardown
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.same(typesOn(server, 0), ['sync', 'send'], 'no ping');
  t.equal(server.conns.length, 1);
  t.equal(client.pendingSends().length, 1, 'the send still waits');
});
