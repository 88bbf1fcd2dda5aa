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
