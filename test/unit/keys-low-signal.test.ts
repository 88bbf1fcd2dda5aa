/**
 * keysLowNotifier (src/keys/low-signal.ts) against the in-memory session registry: the frame goes to
 * the device's registered connection (node, shard, connection id), other devices of the user get
 * nothing, an offline device gets nothing (it sees `low: true` over HTTP), and a burst of signals for
 * one device within the interval sends one frame.
 */
import t from 'tap';
import type { SessionRef } from '../../src/actors/session.js';
import { registryConnId } from '../../src/cluster/thread-sessions.js';
import { MemorySessions } from '../../src/cluster/sessions/memory-sessions.js';
import { keysLowNotifier } from '../../src/keys/low-signal.js';
import { createLogger } from '../../src/lib/log.js';
import type { KeysLowFrame } from '../../src/protocol/client-frames.js';

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

t.test('keys.low reaches the live session of the device, once per interval', async (t) => {
  const sessions = new MemorySessions();
  const phone: SessionRef = { node: 'node-b', shard: 3, connId: 4_294_967_301, user: 'bob', device: 'phone' };
  const laptop: SessionRef = { node: 'node-a', shard: 0, connId: 7, user: 'bob', device: 'laptop' };
  for (const s of [phone, laptop]) await sessions.put(s.user, s.device, { node: s.node, connId: registryConnId(s) }, 60_000);
  const pushed: { to: SessionRef; frame: KeysLowFrame }[] = [];
  let clock = 1_000_000;
  const notify = keysLowNotifier({
    sessions,
    push: (to, frame) => pushed.push({ to, frame }),
    threshold: 10,
    log: createLogger({ level: 'silent', node: 'keys-test', thread: 'main' }),
    minIntervalMs: 5_000,
    now: () => clock,
  });

  notify('bob', 'phone', 9);
  await settle();
  t.same(pushed, [{ to: phone, frame: { t: 'keys.low', remaining: 9, threshold: 10 } }], 'to the phone connection on its node and shard');

  notify('bob', 'phone', 8);
  notify('bob', 'phone', 7);
  await settle();
  t.equal(pushed.length, 1, 'suppressed within the interval');

  clock += 5_000;
  notify('bob', 'phone', 6);
  await settle();
  t.same(pushed.at(-1), { to: phone, frame: { t: 'keys.low', remaining: 6, threshold: 10 } }, 'again after the interval');

  notify('bob', 'tablet', 2);
  notify('carol', 'phone', 0);
  await settle();
  t.equal(pushed.length, 2, 'a device without a live session gets no frame');
});
