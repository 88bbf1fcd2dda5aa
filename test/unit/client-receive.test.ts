import t, { type Test } from 'tap';
import { TicksClient, type ClientOptions, type Message, type ReceiptEvent } from '../../src/client/index.js';
import { FakeServer, text, waitFor } from './client-fake-server.js';

// Receiving: sync paging, dedupe, gap repair, expiry and receipts, against a fake server.

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
  const messages: Message[] = [];
  client.on('message', (m) => messages.push(m));
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  return { server, client, messages };
}

const caughtUp = (client: TicksClient) => new Promise<{ rounds: number }>((resolve) => client.once('synced', resolve));

t.test('sync pages with more:true until more:false, and emits every message in order', async (t) => {
  const { server, client, messages } = await setup(t);
  for (let i = 1; i <= 250; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  server.append('d:alice:bob', 'bob', 'b1', 'direct');
  const synced = caughtUp(client);
  await client.connect();
  t.equal((await synced).rounds, 3);
  const syncs = server.framesOf('sync');
  t.same(
    syncs.map((f) => f.cursors),
    [undefined, { 'g:team': 100, 'd:alice:bob': 1 }, { 'g:team': 200, 'd:alice:bob': 1 }],
    'first round on the stored cursors, then on the cursors the device holds',
  );
  t.ok(syncs.every((f) => f.limit === 100));
  const team = messages.filter((m) => m.conv === 'g:team');
  t.same(team.map((m) => m.seq), Array.from({ length: 250 }, (_, i) => i + 1));
  t.equal(text(team[249]!), 'm250');
  t.equal(team[0]!.kind, 'group');
  t.equal(team[0]!.source, 'sync');
  t.equal(client.cursor('g:team'), 250);
  await waitFor(() => server.dacks.get('cli|g:team') === 250, 'a cumulative dack of 250');
  t.ok(server.framesOf('dack').length < 10, 'dacks are batched, not one per message');
});

t.test('redelivered msg frames are emitted once', async (t) => {
  const { server, client, messages } = await setup(t);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const conn = server.conns[0]!;
  server.append('d:alice:bob', 'bob', 'b1', 'one');
  server.append('d:alice:bob', 'bob', 'b1', 'two');
  server.deliver(conn, 'd:alice:bob', 1);
  server.deliver(conn, 'd:alice:bob', 1);
  server.deliver(conn, 'd:alice:bob', 2);
  server.deliver(conn, 'd:alice:bob', 1);
  server.deliver(conn, 'd:alice:bob', 2);
  await waitFor(() => server.dacks.get('cli|d:alice:bob') === 2, 'dack 2');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.same(messages.map((m) => [m.seq, text(m), m.source]), [
    [1, 'one', 'live'],
    [2, 'two', 'live'],
  ]);
});

t.test('a seq jump is repaired with history and emitted in order', async (t) => {
  const { server, client, messages } = await setup(t);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const conn = server.conns[0]!;
  for (let i = 1; i <= 5; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  server.deliver(conn, 'g:team', 1);
  server.deliver(conn, 'g:team', 4); // 2 and 3 lost on the way
  await waitFor(() => messages.length === 4, 'the gap filled');
  t.same(messages.map((m) => [m.seq, m.source]), [
    [1, 'live'],
    [2, 'history'],
    [3, 'history'],
    [4, 'live'],
  ]);
  t.same(server.framesOf('history'), [{ t: 'history', id: server.framesOf('history')[0]!.id, conv: 'g:team', before: 4, limit: 2 }]);
  await waitFor(() => server.dacks.get('cli|g:team') === 4, 'dack 4');
  t.notOk(server.framesOf('dack').some((d) => d.conv === 'g:team' && d.seq > 1 && d.seq < 4), 'never dacked past the gap');
  server.deliver(conn, 'g:team', 5);
  await waitFor(() => messages.length === 5, 'seq 5');
});

t.test('two gaps: filling the first is progress, and the second is repaired too, with no error', async (t) => {
  const { server, client, messages } = await setup(t);
  const errors: unknown[] = [];
  client.on('error', (e) => errors.push(e));
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const conn = server.conns[0]!;
  for (let i = 1; i <= 7; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  server.deliver(conn, 'g:team', 1);
  server.deliver(conn, 'g:team', 3); // 2 lost
  server.deliver(conn, 'g:team', 6); // 4 and 5 lost
  await waitFor(() => messages.length === 6, 'both gaps filled');
  t.same(messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6], 'in order');
  t.same(errors, [], 'no client.gap error: the first page made progress');
  t.ok(server.framesOf('history').length >= 2, 'one history request per gap');
});

t.test('a gap that closes by itself is not repaired', async (t) => {
  const { server, client, messages } = await setup(t, { gapRepairDelayMs: 200 });
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const conn = server.conns[0]!;
  for (let i = 1; i <= 3; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  server.deliver(conn, 'g:team', 1);
  server.deliver(conn, 'g:team', 3);
  server.deliver(conn, 'g:team', 2); // the late one arrives before the repair delay
  await waitFor(() => messages.length === 3, 'all three');
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.same(messages.map((m) => m.seq), [1, 2, 3]);
  t.equal(server.framesOf('history').length, 0);
});

t.test('an expired sync batch emits gap-expired and moves the cursor', async (t) => {
  const { server, client, messages } = await setup(t, { cursors: { 'g:old': 2 } });
  for (let i = 1; i <= 10; i++) server.append('g:old', 'bob', 'b1', `m${i}`);
  server.intercept = (frame, conn) => {
    if (frame.t !== 'sync') return false;
    t.same(frame.cursors, { 'g:old': 2 }, 'the persisted cursor is sent');
    const msgs = server.logs.get('g:old')!.slice(5);
    server.push(conn, { t: 'sync.batch', id: frame.id, conv: 'g:old', kind: 'group', msgs, head: 10, expired: true, retainedFrom: 6 });
    server.push(conn, { t: 'synced', id: frame.id, heads: { 'g:old': 10 }, reads: {}, more: false });
    return true;
  };
  const expired: unknown[] = [];
  client.on('gap-expired', (e) => expired.push(e));
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  t.same(expired, [{ conv: 'g:old', from: 3, to: 5 }]);
  t.same(messages.map((m) => m.seq), [6, 7, 8, 9, 10]);
  t.equal(client.cursor('g:old'), 10);
});

t.test('receipts: live frames and synced peers/reads, monotonic per user', async (t) => {
  const { server, client } = await setup(t);
  server.intercept = (frame, conn) => {
    if (frame.t !== 'sync') return false;
    server.push(conn, {
      t: 'synced',
      id: frame.id,
      heads: { 'd:alice:bob': 3 },
      reads: { 'd:alice:bob': 1 },
      more: false,
      peers: { 'd:alice:bob': { user: 'bob', delivered: 3, read: 2 } },
    });
    return true;
  };
  const receipts: ReceiptEvent[] = [];
  client.on('receipt', (r) => receipts.push(r));
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  t.same(client.receipts('d:alice:bob'), { delivered: 3, read: 2, users: { bob: { delivered: 3, read: 2 } } });
  t.equal(client.readCursor('d:alice:bob'), 1);
  const conn = server.conns[0]!;
  server.push(conn, { t: 'receipt', conv: 'd:alice:bob', kind: 'delivered', user: 'bob', device: 'b2', seq: 2 }); // old news
  server.push(conn, { t: 'receipt', conv: 'd:alice:bob', kind: 'read', user: 'bob', seq: 3 });
  await waitFor(() => receipts.length === 4, 'the live read receipt');
  t.same(receipts.map((r) => [r.kind, r.user, r.seq, r.source]), [
    ['read', 'alice', 1, 'sync'],
    ['delivered', 'bob', 3, 'sync'],
    ['read', 'bob', 2, 'sync'],
    ['read', 'bob', 3, 'live'],
  ]);
});

t.test('markRead sends one cumulative read frame, never beyond what the device holds', async (t) => {
  const { server, client, messages } = await setup(t);
  for (let i = 1; i <= 3; i++) server.append('d:alice:bob', 'bob', 'b1', `m${i}`);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  t.equal(messages.length, 3);
  client.markRead('d:alice:bob', 1);
  client.markRead('d:alice:bob', 2);
  client.markRead('d:alice:bob', 99);
  client.markRead('d:alice:bob', 1);
  await waitFor(() => server.framesOf('read').length > 0, 'a read frame');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.same(server.framesOf('read'), [{ t: 'read', conv: 'd:alice:bob', seq: 3 }]);
  t.equal(client.readCursor('d:alice:bob'), 3);
});

t.test('history pages backwards and feeds unseen messages to the receive order', async (t) => {
  const { server, client } = await setup(t);
  for (let i = 1; i <= 5; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const first = await client.history('g:team', undefined, 2);
  t.same(first.messages.map((m) => m.seq), [5, 4]);
  t.equal(first.next, 4);
  const second = await client.history('g:team', first.next!, 10);
  t.same(second.messages.map((m) => m.seq), [3, 2, 1]);
  t.equal(second.next, null);
  t.equal(second.messages[0]!.kind, 'group', 'kind remembered from sync');
});

t.test('a live message for an unknown conversation triggers a sync that places it', async (t) => {
  const { server, client, messages } = await setup(t);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  // Joined g:new while connected: 3 older messages this device never saw, stored cursor 0.
  for (let i = 1; i <= 4; i++) server.append('g:new', 'bob', 'b1', `m${i}`);
  server.deliver(server.conns[0]!, 'g:new', 4);
  await waitFor(() => messages.length === 4, 'the older messages from the sync');
  t.same(messages.map((m) => [m.seq, m.source]), [
    [1, 'sync'],
    [2, 'sync'],
    [3, 'sync'],
    [4, 'live'],
  ]);
  t.equal(server.framesOf('sync').length, 2);
});

t.test('a gap whose history page says expired is reported and skipped', async (t) => {
  const { server, client, messages } = await setup(t);
  const synced = caughtUp(client);
  await client.connect();
  await synced;
  const conn = server.conns[0]!;
  for (let i = 1; i <= 4; i++) server.append('g:team', 'bob', 'b1', `m${i}`);
  server.intercept = (frame) => {
    if (frame.t !== 'history') return false;
    server.push(conn, { t: 'history.page', id: frame.id, conv: frame.conv, msgs: [], next: null, expired: true });
    return true;
  };
  const expired: unknown[] = [];
  client.on('gap-expired', (e) => expired.push(e));
  server.deliver(conn, 'g:team', 1);
  server.deliver(conn, 'g:team', 4);
  await waitFor(() => messages.length === 2, 'seq 4 after the expired range');
  t.same(expired, [{ conv: 'g:team', from: 2, to: 3 }]);
  t.same(messages.map((m) => m.seq), [1, 4]);
});
