/**
 * Frames between nodes (thread frames on the bus): the `users` fan-out frame and a forwarded
 * conversation message with its hop count survive encoding, and the endpoint naming is stable.
 */
import t from 'tap';
import { decodeThreadFrame, encodeThreadFrame } from '../../src/actors/thread-frames.js';
import { endpointOf, registryConnId } from '../../src/cluster/thread-sessions.js';

t.test('a users frame carries each message once with its users', async (t) => {
  const msgs = [{ seq: 7, mid: 'm7', from: 'alice', fdev: 'phone', body: new Uint8Array([1, 2]), ts: 5, cmid: 'c7' }];
  const frame = {
    v: 1 as const,
    t: 'users' as const,
    items: [
      { users: ['bob', 'carol'], msg: { t: 'deliver' as const, conv: 'g:x', kind: 'group' as const, msgs } },
      { users: ['bob'], msg: { t: 'receipt' as const, conv: 'g:x', kind: 'read' as const, user: 'alice', device: 'phone', seq: 7 } },
    ],
  };
  const back = decodeThreadFrame(encodeThreadFrame(frame));
  t.same(back, frame, 'round trip');
});

t.test('a forwarded conversation message keeps its hop count', async (t) => {
  const session = { node: 'n1', shard: 1, connId: 4, user: 'alice', device: 'phone' };
  const frame = { v: 1 as const, t: 'actor' as const, kind: 'conv' as const, key: 'd:alice:bob', msg: { t: 'read' as const, session, seq: 3 }, hops: 2 };
  t.same(decodeThreadFrame(encodeThreadFrame(frame)), frame);
});

t.test('endpoints and registry connection ids', async (t) => {
  t.equal(endpointOf('node-a', 3), 'node-a.3', 'a shard thread is <node>.<shard> on the bus and in the directory');
  t.equal(registryConnId({ node: 'node-a', shard: 1, connId: 4294967297, user: 'u', device: 'd' }), '1:4294967297', 'the registry names a socket <shard>:<connId>');
});
