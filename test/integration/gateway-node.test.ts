import t from 'tap';
import { CLOSE } from '../../src/protocol/codes.js';
import { connectAuthed, startTestNode, within, type Client } from '../support/gateway-harness.js';

const n = await startTestNode(t);

async function get(path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(n.http + path);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

function metric(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : NaN;
}

t.test('healthz, readyz and 404s answer over HTTP on the shared port', async (t) => {
  t.match(await get('/healthz'), { status: 200, body: 'ok\n' });
  t.match(await get('/readyz'), { status: 200, body: 'ready\n' });
  t.match(await get('/nope'), { status: 404, body: /no such endpoint: GET \/nope; try \/ws/ });
  t.match(await get('/ws'), { status: 426 });
});

t.test('/metrics merges every thread: both shards and main, counters summed', async (t) => {
  const clients: Client[] = [];
  for (let i = 0; i < 16; i++) clients.push(await connectAuthed(n, `u${i}`, 'd'));
  const { status, body, type } = await get('/metrics');
  t.equal(status, 200);
  t.match(type, /text\/plain; version=0\.0\.4/);
  t.match(body, /^ticks_eventloop_lag_seconds\{thread="main"\} /m);
  t.match(body, /^ticks_eventloop_lag_seconds\{thread="0"\} /m);
  t.match(body, /^ticks_eventloop_lag_seconds\{thread="1"\} /m);
  // Each thread's own V8 heap (the shards' heaps hold the connections), one series per thread.
  const heaps = ['main', '0', '1'].map((th) => metric(body, new RegExp(`^ticks_thread_heap_used_bytes\\{thread="${th}"\\} (\\d+)$`, 'm')));
  t.ok(heaps.every((b) => b > 1_000_000), `heap used per thread main/0/1: ${heaps.join(', ')} bytes`);
  t.not(heaps[1], heaps[2], 'the shards report their own heaps, not one copied value');
  t.equal(metric(body, /^ticks_gateway_connections (\d+)$/m), 16, 'the gauge is the sum over shards');
  t.equal(metric(body, /^ticks_gateway_connections_total\{result="opened"\} (\d+)$/m), 16);
  t.equal(body.match(/^process_cpu_user_seconds_total /gm)?.length, 1, 'process metrics once (main thread only)');
  t.match(body, /^ticks_node_shards_up 2$/m);
  t.match(body, /^# TYPE ticks_store_op_duration_seconds histogram$/m, 'store metrics of the shards are there');
  for (const c of clients) c.ws.close(1000);
  await Promise.all(clients.map((c) => c.closed));
});

t.test('a crashed shard is restarted; its clients hear 4005 and can reconnect; the mesh is whole again', async (t) => {
  const clients: Client[] = [];
  for (let i = 0; i < 16; i++) clients.push(await connectAuthed(n, `c${i}`, 'd'));
  n.node.crashShard(0);
  const closed = await Promise.all(clients.map((c) => within(c.closed, 1500, 'close').catch(() => null)));
  const dropped = closed.filter((x) => x !== null);
  t.ok(dropped.length > 0 && dropped.length < 16, `${dropped.length} of 16 clients were on the crashed shard`);
  t.ok(dropped.every((x) => x!.code === CLOSE.shardRestarting), `they heard 4005 (${dropped.map((x) => x!.code).join(',')})`);
  for (const [i, c] of clients.entries()) {
    if (closed[i] !== null) continue;
    c.send({ t: 'ping', id: 1 });
    await c.next((f) => f.t === 'pong');
  }
  t.pass('clients of the other shard kept working');

  const deadline = Date.now() + 10_000;
  while (n.node.readyShards() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(n.node.readyShards(), 2, 'the shard is back');
  t.match(await n.node.metrics(), /^ticks_node_shard_restarts_total 1$/m);

  const again: Client[] = [];
  for (let i = 0; i < 16; i++) again.push(await connectAuthed(n, `c${i}`, 'd'));
  t.pass('every device reconnected');
  // Messages between users whose actors and sockets sit on either shard cross the new mesh ports.
  for (let i = 0; i < 8; i++) {
    const [a, b] = [again[2 * i]!, again[2 * i + 1]!];
    a.send({ t: 'send', id: 1, to: `c${2 * i + 1}`, cmid: `m${i}`, body: new Uint8Array([i]) });
    t.match(await within(a.next((f) => f.t === 'sent' || f.t === 'error'), 5000, 'sent'), { t: 'sent', id: 1 });
    t.match(await within(b.next((f) => f.t === 'msg'), 5000, 'msg'), { t: 'msg', from: `c${2 * i}`, body: new Uint8Array([i]) });
  }
  for (const c of [...clients, ...again]) if (c.ws.readyState === c.ws.OPEN) c.ws.close(1000);
});
