import { PassThrough } from 'node:stream';
import t from 'tap';
import { chatCommand, runChat } from '../../src/cli/chat.js';
import { FakeServer, waitFor } from './client-fake-server.js';

// The `ticks chat` CLI against the fake server, with in-memory stdin and stdout.

t.test('chat prints messages, sends lines, shows ✓, ✓✓ and read, and quits', async (t) => {
  const server = await FakeServer.start();
  t.teardown(() => server.close());
  server.append('d:alice:bob', 'bob', 'b1', 'hi there');
  const input = new PassThrough();
  const output = new PassThrough();
  let printed = '';
  output.on('data', (chunk: Buffer) => (printed += chunk.toString('utf8')));
  const done = runChat({ user: 'alice', to: 'bob', device: 'cli', url: `${server.url}/ws`, token: 'alice.cli.sig' }, { input, output });

  await waitFor(() => printed.includes('[1] bob: hi there'), 'the synced message');
  t.match(printed, /connected to fake as alice\/cli; chatting with bob/);
  await waitFor(() => server.framesOf('read').length > 0, 'a read for the message shown');
  t.same(server.framesOf('read'), [{ t: 'read', conv: 'd:alice:bob', seq: 1 }]);

  input.write('hello bob\n');
  await waitFor(() => printed.includes('[2] alice: hello bob ✓'), 'the sent tick');
  const conn = server.conns[0]!;
  server.push(conn, { t: 'receipt', conv: 'd:alice:bob', kind: 'delivered', user: 'bob', device: 'b1', seq: 2 });
  await waitFor(() => printed.includes('✓✓ delivered up to [2]'), 'the delivered ticks');
  server.push(conn, { t: 'receipt', conv: 'd:alice:bob', kind: 'read', user: 'bob', seq: 2 });
  await waitFor(() => printed.includes('read up to [2]'), 'the read receipt');

  server.append('d:alice:bob', 'bob', 'b1', 'bye');
  server.deliver(conn, 'd:alice:bob', 3);
  await waitFor(() => printed.includes('[3] bob: bye'), 'a live message');

  input.write('/history 5\n');
  await waitFor(() => (printed.match(/\[1\] bob: hi there/g) ?? []).length === 2, 'history printed');

  input.write('/quit\n');
  t.equal(await done, 0);
  t.equal(new TextDecoder().decode(server.framesOf('send')[0]!.body), 'hello bob', 'bodies are UTF-8 bytes');
});

t.test('chat exits 1 when the server refuses the token', async (t) => {
  const server = await FakeServer.start();
  t.teardown(() => server.close());
  server.onConnect = (conn) => {
    conn.ws.close(4500, 'bad token');
    return false;
  };
  const output = new PassThrough();
  let printed = '';
  output.on('data', (chunk: Buffer) => (printed += chunk.toString('utf8')));
  const code = await runChat({ user: 'alice', to: 'bob', device: 'cli', url: server.url, token: 'alice.cli.sig' }, { input: new PassThrough(), output });
  t.equal(code, 1);
  t.match(printed, /closed for good: 4500 bad token/);
});

t.test('chat usage errors', async (t) => {
  const io = { out: () => undefined, err: () => undefined, env: {} };
  await t.rejects(chatCommand.run(['--user', 'alice'], io), { name: 'UsageError' });
  await t.rejects(chatCommand.run(['--user', 'al:ice', '--to', 'bob'], io), { name: 'UsageError' });
  await t.rejects(chatCommand.run(['--user', 'alice', '--to', 'bob', 'extra'], io), { name: 'UsageError' });
});
