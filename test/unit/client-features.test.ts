import t, { type Test } from 'tap';
import { TicksClient, type KeysLowEvent, type ReceiptEvent, type SyncedEvent } from '../../src/client/index.js';
import { FakeServer, waitFor } from './client-fake-server.js';

// SDK surface of issue 5's server features, against the fake server over real sockets: media ids on
// sends, unread badges on `synced`, the `keys.low` signal, and cumulative "all" receipts.

const MEDIA_A = 'a'.repeat(64);
const MEDIA_B = 'b'.repeat(64);

async function setup(t: Test) {
  const server = await FakeServer.start();
  const client = new TicksClient({ url: server.url, token: 'alice.cli.sig', random: () => 0.5, backoff: { baseMs: 20, capMs: 50 }, ackDelayMs: 5 });
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  return { server, client };
}

t.test('send carries media ids; malformed ones are refused before anything is sent', async (t) => {
  const { server, client } = await setup(t);
  await client.connect();
  const sent = await client.send({ conv: 'g:x' }, new Uint8Array([1]), { media: [MEDIA_A, MEDIA_B] });
  t.equal(sent.seq, 1);
  const frame = server.frames.map((f) => f.frame).find((f) => f.t === 'send');
  t.same(frame !== undefined && frame.t === 'send' ? frame.media : undefined, [MEDIA_A, MEDIA_B], 'the send frame names the media');
  await client.send({ conv: 'g:x' }, new Uint8Array([2]));
  const plain = server.frames.map((f) => f.frame).filter((f) => f.t === 'send')[1];
  t.equal(plain !== undefined && 'media' in plain, false, 'no media field when the message has none');
  const before = server.frames.length;
  await t.rejects(client.send({ conv: 'g:x' }, new Uint8Array([3]), { media: [MEDIA_A, 'not-a-media-id'] }), { code: 'invalid_field', field: 'media.1' });
  await t.rejects(client.send({ conv: 'g:x' }, new Uint8Array([3]), { media: Array.from({ length: 17 }, () => MEDIA_A) }), { code: 'invalid_field', field: 'media' });
  t.equal(server.frames.length, before, 'refused sends never reach the server');
});

t.test('synced carries the unread badges', async (t) => {
  const { server, client } = await setup(t);
  server.append('g:one', 'bob', 'b1', 'x');
  server.append('g:one', 'bob', 'b1', 'y');
  server.append('d:alice:bob', 'bob', 'b1', 'z');
  const synced = new Promise<SyncedEvent>((resolve) => client.once('synced', resolve));
  await client.connect();
  const e = await synced;
  t.same(e.unread, { 'g:one': 2, 'd:alice:bob': 1 });
  t.equal(e.unreadTotal, 3);
});

t.test('a keys.low frame becomes a keys-low event', async (t) => {
  const { server, client } = await setup(t);
  await client.connect();
  const low = new Promise<KeysLowEvent>((resolve) => client.once('keys-low', resolve));
  server.push(server.conns[0]!, { t: 'keys.low', remaining: 3, threshold: 10 });
  t.same(await low, { remaining: 3, threshold: 10 });
});

t.test('"all" receipts are cumulative: one at or below the highest seen is not emitted', async (t) => {
  const { server, client } = await setup(t);
  await client.connect();
  const got: ReceiptEvent[] = [];
  client.on('receipt', (r) => {
    if (r.all === true) got.push(r);
  });
  const conn = server.conns[0]!;
  for (const seq of [5, 3, 5, 7]) server.push(conn, { t: 'receipt', conv: 'g:x', kind: 'delivered', user: '*', seq, all: true });
  server.push(conn, { t: 'receipt', conv: 'g:x', kind: 'read', user: '*', seq: 4, all: true });
  await waitFor(() => got.length >= 3, 'three all-receipts');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(
    got.map((r) => `${r.kind}@${r.seq}`),
    ['delivered@5', 'delivered@7', 'read@4'],
  );
  t.ok(got.every((r) => r.user === '*' && r.source === 'live'));
});

// ---- membership (PROTOCOL 3.7): join floors and departures ------------------------------------------

/** A client that already holds `conv` up to `have`, against the fake server. */
async function floorSetup(t: Test, conv: string, have: number) {
  const server = await FakeServer.start();
  const client = new TicksClient({ url: server.url, token: 'alice.cli.sig', random: () => 0.5, backoff: { baseMs: 20, capMs: 50 }, ackDelayMs: 5, gapRepairDelayMs: 20, cursors: { [conv]: have } });
  const errors: unknown[] = [];
  client.on('error', (e) => errors.push(e));
  t.teardown(async () => {
    client.close();
    await server.close();
  });
  return { server, client, errors };
}

t.test('a sync batch that starts at the join floor is not a gap; synced reports the floors and the departures', async (t) => {
  const { server, client, errors } = await floorSetup(t, 'g:f', 3);
  for (let i = 1; i <= 10; i++) server.append('g:f', 'bob', 'b1', `m${i}`);
  server.intercept = (frame, conn) => {
    if (frame.t !== 'sync') return false;
    const log = server.logs.get('g:f')!;
    // Re-added at seq 8: the server starts there and says so.
    server.push(conn, { t: 'sync.batch', id: frame.id, conv: 'g:f', kind: 'group', msgs: log.slice(7), head: 10, from: 8 });
    server.push(conn, { t: 'synced', id: frame.id, heads: { 'g:f': 10, 'g:gone': 4 }, reads: {}, more: false, from: { 'g:f': 8 }, left: { 'g:gone': 4 } });
    return true;
  };
  const seqs: number[] = [];
  client.on('message', (m) => seqs.push(m.seq));
  const synced = new Promise<SyncedEvent>((resolve) => client.once('synced', resolve));
  await client.connect();
  const e = await synced;
  t.same(e.from, { 'g:f': 8 });
  t.same(e.left, { 'g:gone': 4 });
  await waitFor(() => client.cursor('g:f') === 10, 'the device holds g:f up to 10');
  t.same(seqs, [8, 9, 10], 'the messages from the floor, in order');
  await new Promise((r) => setTimeout(r, 60));
  t.equal(server.framesOf('history').length, 0, 'no gap repair for the seqs below the floor');
  t.same(errors, []);
});

t.test('a history page that stops at the join floor closes the gap below a live message', async (t) => {
  const { server, client, errors } = await floorSetup(t, 'g:h', 5);
  for (let i = 1; i <= 9; i++) server.append('g:h', 'bob', 'b1', `m${i}`);
  server.intercept = (frame, conn) => {
    if (frame.t === 'sync') {
      server.push(conn, { t: 'synced', id: frame.id, heads: { 'g:h': 5 }, reads: {}, more: false });
      return true;
    }
    if (frame.t === 'history') {
      // Removed at 5, re-added at 9: nothing below 9 is this user's.
      server.push(conn, { t: 'history.page', id: frame.id, conv: 'g:h', msgs: [], next: null, expired: false, from: 9 });
      return true;
    }
    return false;
  };
  const seqs: number[] = [];
  client.on('message', (m) => seqs.push(m.seq));
  const synced = new Promise<SyncedEvent>((resolve) => client.once('synced', resolve));
  await client.connect();
  await synced;
  server.deliver(server.conns[0]!, 'g:h', 9);
  await waitFor(() => client.cursor('g:h') === 9, 'the gap 6..8 is closed by the floor');
  t.same(seqs, [9]);
  t.equal(server.framesOf('history').length, 1);
  t.same(errors, [], 'no client.gap error');
});
