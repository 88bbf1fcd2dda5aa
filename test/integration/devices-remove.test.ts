/**
 * `DELETE /devices/:device` on one node (2 shard threads), on both store engines (embedded lmdb and
 * the test Cassandra): the removed device's live session is closed with 4507, a token issued before
 * the removal is refused at connect (4507 after an `unauthorized` error; HTTP 401 auth.removed),
 * also after a node restart (the tombstone is durable), a token issued after it is accepted, and the
 * user's other devices are untouched. The cluster case (the session on another node) is in
 * devices-remove-cluster.test.ts. With a short auth.maxTokenLifetimeS: tokens living longer are
 * refused (4500, HTTP 401 auth.lifetime), and a removal's tombstone is gone after the bound plus the
 * clock tolerance (test/contract/tombstones.test.ts covers the engines in detail).
 */
import t from 'tap';
import { createTombstones } from '../../src/auth/create-tombstones.js';
import { CLOSE } from '../../src/protocol/codes.js';
import { waitFor } from '../support/cluster-contract.js';
import { waitUntil } from '../support/e2e-client.js';
import { e2eEngines, startE2eNode, type E2eNode } from '../support/e2e-node.js';
import { nextSecondAfter, rawConnect } from '../support/raw-connect.js';

async function removeDevice(n: E2eNode, token: string, device: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${n.node.port}/devices/${encodeURIComponent(device)}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
}

/** `ticks_<name>{<label>="<value>"}` summed over the node's (merged) metrics. */
async function metric(n: E2eNode, name: string, label: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${n.node.port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\d+(?:\.\d+)?)$/.exec(line);
    if (m && m[1] === name && m[2]!.includes(label)) sum += Number(m[3]);
  }
  return sum;
}

for (const engine of e2eEngines('devices_remove')) {
  t.test(`${engine.name}: removing a device closes its session and refuses its older tokens`, async (t) => {
    const n = await startE2eNode(t, engine);
    const alice = n.user('alice');
    const bob = n.user('bob');
    const phone = n.client(alice, 'phone');
    const laptop = n.client(alice, 'laptop');
    const bobPhone = n.client(bob, 'phone');
    await Promise.all([phone.connect(), laptop.connect(), bobPhone.connect()]);
    const oldPhoneToken = await n.token(alice, 'phone');

    t.equal((await removeDevice(n, await n.token(alice, 'laptop'), 'bad device!')).status, 400, 'a malformed device id: 400');
    const removed = await removeDevice(n, await n.token(alice, 'laptop'), 'phone');
    const removedAt = Date.now();
    t.equal(removed.status, 204, 'the laptop removes the phone');

    await waitUntil(() => phone.log.some((l) => l.k === 'closed'), 'the phone session to close', () => phone.describe());
    t.same(
      phone.log.flatMap((l) => (l.k === 'closed' ? [l.code] : [])),
      [CLOSE.deviceRemoved],
      'closed with 4507, which the SDK does not reconnect after',
    );
    t.same(phone.reconnectCodes(), [], 'the phone did not try to reconnect');
    t.equal(await metric(n, 'ticks_devices_removed_sessions_total', 'node="this"'), 1, 'one session closed on this node');

    const old = await rawConnect(n.url, oldPhoneToken);
    t.equal(old.hello, false, 'a token issued before the removal gets no hello');
    t.equal(old.closeCode, CLOSE.deviceRemoved, 'and is closed with 4507');
    t.equal(old.closeReason, 'device removed');
    t.match(old.frames, [{ t: 'error', code: 'unauthorized', msg: /device removed/ }], 'after an unauthorized error frame that says why');
    const http = await fetch(`http://127.0.0.1:${n.node.port}/push-token`, { method: 'DELETE', headers: { authorization: `Bearer ${oldPhoneToken}` } });
    t.equal(http.status, 401, 'HTTP refuses the old token too');
    t.match(await http.json(), { error: 'auth.removed' });

    // The other devices are untouched: the laptop still gets live messages.
    const mark = laptop.mark();
    const sent = await bobPhone.send({ to: alice }, 'still there, laptop?');
    await waitUntil(() => laptop.messages(sent.conv, mark).length === 1, 'the laptop to get the message', () => laptop.describe());
    t.same(laptop.log.filter((l) => l.k === 'closed'), [], 'the laptop session was not closed');
    t.same(laptop.reconnectCodes(), [], 'nor reconnected');

    // A token issued after the removal registers the phone again.
    await nextSecondAfter(removedAt);
    const fresh = await rawConnect(n.url, await n.token(alice, 'phone'));
    t.equal(fresh.hello, true, 'a token issued after the removal is accepted');
    const phone2 = n.client(alice, 'phone');
    await phone2.connect();
    const sent2 = await bobPhone.send({ to: alice }, 'welcome back, phone');
    await waitUntil(() => phone2.messages(sent2.conv).some((m) => new TextDecoder().decode(m.body) === 'welcome back, phone'), 'the re-registered phone to get live messages', () => phone2.describe());

    // Durable: after a restart the old token is still refused, the new one still accepted.
    phone2.close();
    await n.stop();
    await n.start();
    const afterRestart = await rawConnect(n.url, oldPhoneToken);
    t.equal(afterRestart.closeCode, CLOSE.deviceRemoved, 'the old token is still refused after a restart');
    t.equal((await rawConnect(n.url, await n.token(alice, 'phone'))).hello, true, 'a new token is still accepted');
    t.equal(await metric(n, 'ticks_gateway_connections_total', 'result="device_removed"'), 1, 'refusals are counted by the gateway');
    t.ok((await metric(n, 'ticks_devices_tombstone_checks_total', 'result="newer_token"')) >= 1, 'accepted newer tokens are counted');
  });
}

for (const engine of e2eEngines('devices_prune')) {
  t.test(`${engine.name}: tokens beyond auth.maxTokenLifetimeS are refused; a removal is remembered for the bound plus tolerance`, async (t) => {
    const n = await startE2eNode(t, engine, { auth: { maxTokenLifetimeS: 8, clockToleranceS: 0 } });
    const alice = n.user('alice');

    const tooLong = await n.token(alice, 'phone', { ttlS: 9 });
    const refused = await rawConnect(n.url, tooLong);
    t.equal(refused.hello, false, 'a token living longer than the bound gets no hello');
    t.equal(refused.closeCode, CLOSE.badToken, 'and is closed with 4500 (do not reconnect with it)');
    t.match(refused.frames, [{ t: 'error', code: 'unauthorized', msg: /lifetime/ }], 'after an error that says why');
    const http = await fetch(`http://127.0.0.1:${n.node.port}/push-token`, { method: 'DELETE', headers: { authorization: `Bearer ${tooLong}` } });
    t.equal(http.status, 401);
    t.match(await http.json(), { error: 'auth.lifetime', message: /maxTokenLifetimeS/ }, 'HTTP answers 401 auth.lifetime');

    const oldToken = await n.token(alice, 'phone', { ttlS: 8 });
    t.equal((await removeDevice(n, await n.token(alice, 'laptop', { ttlS: 8 }), 'phone')).status, 204, 'the laptop removes the phone');
    const stones = createTombstones(n.config);
    await stones.open();
    t.teardown(() => stones.close());
    t.equal(stones.keepMs, 9000, 'kept 8 s + 0 s tolerance + 1 s');
    t.ok((await stones.get(alice, 'phone')) !== null, 'the removal is recorded');
    const old = await rawConnect(n.url, oldToken);
    t.ok(old.closeCode === CLOSE.deviceRemoved || old.closeCode === CLOSE.tokenExpired, `the older token is refused (${old.closeCode})`);
    await waitFor('the tombstone to be dropped', async () => (await stones.get(alice, 'phone')) === null, 40_000);
    t.pass('the tombstone is gone once no token issued before the removal can verify');
    const late = await rawConnect(n.url, oldToken);
    t.equal(late.closeCode, CLOSE.tokenExpired, 'and the old token is refused as expired');
  });
}
