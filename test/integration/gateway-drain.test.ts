import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { connect, connectAuthed, startTestNode, within } from '../support/gateway-harness.js';

const root = join(import.meta.dirname, '../..');

t.test('a session is closed with 4501 when its token expires', async (t) => {
  const n = await startTestNode(t, { auth: { clockToleranceS: 0 } });
  const c = connect(`${n.base}/ws?v=1`, { authorization: `Bearer ${await n.token('alice', 'phone', 2)}` });
  await c.next((f) => f.t === 'hello');
  const { code } = await within(c.closed, 10_000, 'expiry close');
  t.equal(code, CLOSE.tokenExpired);
  t.match(c.frames.at(-1), { t: 'error', code: 'unauthorized', msg: 'token expired' });
});

t.test('stop() drains: sessions close with 4000, then nothing listens and stop resolves', async (t) => {
  const n = await startTestNode(t);
  const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => connectAuthed(n, `d${i}`, 'phone')));
  // A send in flight while the drain starts is either acknowledged or answered, never lost silently.
  clients[0]!.send({ t: 'send', id: 1, to: 'd1', cmid: 'inflight', body: new Uint8Array([1]) });
  const t0 = Date.now();
  await n.node.stop();
  const closes = await Promise.all(clients.map((c) => within(c.closed, 5000, 'close')));
  t.same([...new Set(closes.map((c) => c.code))], [CLOSE.draining], 'every client heard 4000');
  t.ok(Date.now() - t0 < n.config.gateway.drainTimeoutMs, 'the drain finished well before its timeout');
  const late = connect(`${n.base}/ws?v=1`);
  t.equal((await within(late.closed, 5000, 'refused')).code, 1006, 'no listener any more');
  await n.node.stop(); // idempotent
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

t.test('npm start: prints where it listens, serves a CLI-minted dev token, exits 0 on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-main-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const env = {
    ...process.env,
    TICKS_CONFIG: join(root, 'config/default.json'),
    TICKS_DATA_DIR: dir,
    TICKS_STORE_EMBEDDED_PATH: join(dir, 'store'),
    TICKS_GATEWAY_PORT: String(port),
    TICKS_GATEWAY_SHARDS: '2',
    TICKS_LOG_LEVEL: 'warn',
  };
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdout.resume();
  const deadline = Date.now() + 30_000;
  while (!stderr.includes('listening on') && Date.now() < deadline && proc.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  t.match(stderr, new RegExp(`listening on ws://127\\.0\\.0\\.1:${port}/ws`));
  t.match(stderr, /\/healthz/);
  t.match(stderr, /npx ticks token alice phone/);

  const cli = spawnSync(process.execPath, [join(root, 'bin/ticks.js'), 'token', 'alice', 'phone', '--ttl', '1h'], { cwd: root, env, encoding: 'utf8' });
  t.equal(cli.status, 0, cli.stderr);
  const token = cli.stdout.trim();
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  const c = connect(`ws://127.0.0.1:${port}/ws?v=1&token=${token}`);
  t.match(await c.next(), { t: 'hello', user: 'alice', device: 'phone' });

  proc.kill('SIGTERM');
  t.equal((await within(c.closed, 15_000, 'close')).code, CLOSE.draining);
  t.equal(await within(exited, 20_000, 'exit'), 0, 'exit code 0');
});
