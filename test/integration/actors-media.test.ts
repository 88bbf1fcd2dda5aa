/**
 * Media ids through the conversation actor (in-process actor layer, embedded store, a real lmdb
 * MediaIndex): an uploaded id is carried to the receivers and its reference is recorded before the
 * sender's `sent`; an id never uploaded is refused before anything is stored; a failed reference
 * write answers a retryable error instead of `sent`, and the retry (a duplicate) records it and
 * delivers the message; with media disabled every send with media ids is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EmbeddedMediaIndex } from '../../src/media/embedded-media-index.js';
import type { MediaIndex } from '../../src/media/media-index.js';
import { sendMediaRefs } from '../../src/media/send-refs.js';
import { bytes, settle, until, World } from './actors-harness.js';

const CONV = 'd:alice:bob';
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const GHOST = 'f'.repeat(64);

/** The real index, with a gate and an injected failure on recordSent (like AppendControl for appends). */
class RecordControl {
  calls: { conv: string; ids: string[] }[] = [];
  failNext = false;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.open?.();
    this.gate = null;
  }
  wrap(index: MediaIndex): MediaIndex {
    return new Proxy(index, {
      get: (target, prop, receiver) => {
        if (prop === 'recordSent') {
          return async (conv: string, ids: readonly string[]) => {
            this.calls.push({ conv, ids: [...ids] });
            const fail = this.failNext;
            this.failNext = false;
            if (this.gate) await this.gate;
            if (fail) throw Object.assign(new Error('injected: media index write failed'), { code: 'store.unavailable', retryable: true });
            return target.recordSent(conv, ids);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

async function setup(t: Test, withMedia = true) {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-actors-media-'));
  const index = new EmbeddedMediaIndex(join(dir, 'index'));
  await index.open();
  for (const id of [A, B]) await index.putMeta({ id, type: 'image/png', size: 10, uploader: 'alice', createdAtMs: 1 });
  const control = new RecordControl();
  const w = await new World(2, {}, withMedia ? { media: sendMediaRefs(control.wrap(index)) } : {}).open();
  t.teardown(async () => {
    await w.close();
    await index.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const alice = w.device('alice', 'phone', 1).connect();
  const bob = w.device('bob', 'phone', 0).connect();
  await settle();
  return { w, index, control, alice, bob };
}

t.test('an uploaded id travels with the message; its reference is recorded before sent', async (t) => {
  const { w, index, control, alice, bob } = await setup(t);
  alice.send({ t: 'send', id: 1, to: 'bob', cmid: 'c1', body: bytes('plain') });
  await until(() => alice.of('sent').length === 1, 'plain sent');
  control.hold();
  alice.send({ t: 'send', id: 2, to: 'bob', cmid: 'c2', body: bytes('photo'), media: [B, A] });
  await until(() => control.calls.length === 1, 'recordSent called');
  await settle();
  t.equal(alice.of('sent').length, 1, 'no sent while the reference write is pending');
  t.equal(bob.msgs(CONV).length, 1, 'and no delivery either');
  t.equal(await index.isSentIn(CONV, A), false);
  control.release();
  await until(() => alice.of('sent').length === 2, 'media send acknowledged');
  t.same(control.calls, [{ conv: CONV, ids: [B, A] }]);
  t.equal(await index.isSentIn(CONV, A), true, 'recorded');
  t.equal(await index.isSentIn(CONV, B), true, 'recorded');
  await until(() => bob.msgs(CONV).length === 2, 'bob got both');
  t.same(bob.msgs(CONV).map((m) => m.media), [undefined, [B, A]], 'the live msg carries the ids in order');
  const stored = await w.store.readForward(CONV, 0, 10);
  t.same(stored.messages.map((m) => m.media), [undefined, [B, A]], 'stored with the message');
});

t.test('an id never uploaded refuses the send before anything is stored', async (t) => {
  const { w, control, alice, bob } = await setup(t);
  alice.send({ t: 'send', id: 1, to: 'bob', cmid: 'c1', body: bytes('x'), media: [A, GHOST] });
  await until(() => alice.of('error').length === 1, 'refused');
  t.match(alice.of('error')[0], { id: 1, code: 'invalid_field', field: 'media.1', retry: false });
  t.match(alice.of('error')[0]!.msg, /never uploaded/);
  t.same(w.control.appends, [], 'no append');
  t.same(control.calls, [], 'no reference');
  // The conversation's order is kept: a send right behind a media send is answered after it.
  alice.send({ t: 'send', id: 2, to: 'bob', cmid: 'c2', body: bytes('photo'), media: [A] });
  alice.send({ t: 'send', id: 3, to: 'bob', cmid: 'c3', body: bytes('caption') });
  await until(() => alice.of('sent').length === 2, 'both sent');
  t.same(alice.of('sent').map((s) => [s.id, s.seq]), [[2, 1], [3, 2]], 'in send order');
  await until(() => bob.msgs(CONV).length === 2, 'delivered');
});

t.test('a failed reference write answers store_unavailable; the retry records it and delivers', async (t) => {
  const { w, index, control, alice, bob } = await setup(t);
  control.failNext = true;
  alice.send({ t: 'send', id: 1, to: 'bob', cmid: 'c1', body: bytes('photo'), media: [A] });
  await until(() => alice.of('error').length === 1, 'answered');
  t.match(alice.of('error')[0], { id: 1, code: 'store_unavailable', retry: true });
  t.equal(alice.of('sent').length, 0, 'never acknowledged without the reference');
  await settle();
  t.equal(bob.msgs(CONV).length, 0, 'not delivered live (devices would sync it from the log)');
  t.equal(await index.isSentIn(CONV, A), false);
  t.equal((await w.store.head(CONV)), 1, 'the message itself was committed');
  alice.send({ t: 'send', id: 2, to: 'bob', cmid: 'c1', body: bytes('photo'), media: [A] });
  await until(() => alice.of('sent').length === 1, 'retry acknowledged');
  t.match(alice.of('sent')[0], { id: 2, seq: 1, dup: true });
  t.equal(await index.isSentIn(CONV, A), true, 'the retry recorded the reference');
  await until(() => bob.msgs(CONV).length === 1, 'the retry delivered the committed message');
  t.same(bob.msgs(CONV)[0]!.media, [A]);
});

t.test('without a media index every send with media ids is refused', async (t) => {
  const { w, alice } = await setup(t, false);
  alice.send({ t: 'send', id: 1, to: 'bob', cmid: 'c1', body: bytes('x'), media: [A] });
  await until(() => alice.of('error').length === 1, 'refused');
  t.match(alice.of('error')[0], { id: 1, code: 'invalid_field', field: 'media', retry: false });
  t.same(w.control.appends, []);
  alice.send({ t: 'send', id: 2, to: 'bob', cmid: 'c2', body: bytes('x') });
  await until(() => alice.of('sent').length === 1, 'a send without media works');
});
