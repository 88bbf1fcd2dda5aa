/**
 * The shard supervisor's view of readiness: a crashed shard spends CLOSE_GRACE_MS closing its
 * sockets before its thread exits; it must stop counting as ready (readyShards, ticks_node_shards_up)
 * when it reports the crash, not when the thread is finally gone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/lib/log.js';
import { ShardSupervisor } from '../../src/node-shards.js';
import { freePorts } from '../support/services/process.js';

const SECRET = 's'.repeat(48);

async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

t.test('a crashed shard stops counting as ready while its thread is still closing sockets', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-shards-'));
  const [port] = await freePorts(1);
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: 'silent' },
    store: { embedded: { path: join(dir, 'store') } },
    gateway: { host: '127.0.0.1', port, shards: 2 },
    auth: { hs256Secret: SECRET },
  });
  let restarts = 0;
  const sup = new ShardSupervisor({
    count: 2,
    log: createLogger({ level: 'silent', node: 'shards-test', thread: 'main' }),
    init: () => ({ nodeId: 'shards-test', incarnation: 'shards-test', config, port: port!, hs256Secret: SECRET, publicKeys: false, testHooks: true }),
    onRequest: () => {},
    onRestart: () => void restarts++,
  });
  t.teardown(async () => {
    sup.beginStop();
    await sup.broadcast({ t: 'stop-accepting' }, 'stopped-accepting', 3000);
    await sup.broadcast({ t: 'drain', timeoutMs: 1000 }, 'drained', 5000);
    await sup.terminate();
    rmSync(dir, { recursive: true, force: true });
  });
  await sup.start();
  t.equal(sup.readyCount, 2);
  t.equal(sup.state(0), 'ready');

  sup.crash(0);
  await until(() => sup.readyCount < 2, 'shard 0 to stop counting as ready');
  t.equal(sup.state(0), 'dying', 'it stopped counting before its thread exited (it is still closing its sockets)');
  t.equal(sup.readyCount, 1);
  await until(() => sup.state(0) !== 'dying', 'the thread to exit');
  t.not(sup.state(0), 'ready', 'exited or restarting: still not ready');
  t.equal(sup.readyCount, 1);
  await until(() => sup.readyCount === 2, 'shard 0 to be restarted');
  t.equal(restarts, 1);
  t.equal(sup.state(0), 'ready');
});
