/**
 * Engine-wide group commit of the embedded store (src/store/embedded/committer.ts): appends of many
 * conversations share transactions, and a call that lmdb fails is isolated from the others in its
 * group. The fault is injected by making lmdb's own `put` throw for one conversation's message rows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import type { EngineContext } from '../../src/store/embedded/tables.js';
import { StoreError } from '../../src/store/errors.js';
import { registry } from '../../src/metrics/registry.js';
import type { MessageDraft } from '../../src/store/types.js';

let n = 0;
function draft(tag: string): MessageDraft {
  n++;
  return {
    messageId: `m-${tag}-${n}`,
    senderUser: 'alice',
    senderDevice: 'alice-phone',
    clientMsgId: `cm-${tag}-${n}`,
    body: new Uint8Array([1, 2, 3]),
    sentAtMs: 1_700_000_000_000 + n,
  };
}

async function groupSizes(): Promise<{ count: number; sum: number }> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'ticks_store_group_commit_size');
  const values = (metric?.values ?? []) as { metricName?: string; value: number }[];
  return {
    count: values.find((v) => v.metricName === 'ticks_store_group_commit_size_count')?.value ?? 0,
    sum: values.find((v) => v.metricName === 'ticks_store_group_commit_size_sum')?.value ?? 0,
  };
}

async function openStore(t: Test, groupCommit: 'engine' | 'writer'): Promise<EmbeddedStore> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-group-'));
  const store = new EmbeddedStore({ path: join(dir, 'db'), bucketSize: 4, idempotencyTtlMs: 3_600_000, groupCommit });
  await store.open();
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function conversations(store: EmbeddedStore, count: number, tag: string): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${tag}-${i}`);
  for (const id of ids) {
    await store.createConversation({ id, kind: 'group', createdBy: 'alice', createdAtMs: 1, members: [{ userId: 'alice', role: 'owner' }] });
  }
  return ids;
}

t.test('appends of many conversations share engine transactions', async (t) => {
  const store = await openStore(t, 'engine');
  const ids = await conversations(store, 40, 'share');
  const writers = await Promise.all(ids.map((id) => store.openWriter(id, 1)));
  const before = await groupSizes();
  const results = await Promise.all(writers.map((w, i) => w.append([draft(`s${i}`)])));
  const after = await groupSizes();
  t.same(results.map((r) => r[0]!.seq), ids.map(() => 1), 'every conversation got seq 1');
  const groups = after.count - before.count;
  t.equal(after.sum - before.sum, 40, 'every append went through the engine committer');
  t.ok(groups >= 1 && groups < 40, `40 concurrent appends committed in ${groups} engine transactions`);
  for (const [i, id] of ids.entries()) {
    const page = await store.readForward(id, 0, 10);
    t.equal(page.messages[0]?.messageId, results[i]![0]!.messageId, `${id} is stored`);
  }
});

t.test('writer mode keeps per-conversation group commit and the same results', async (t) => {
  const store = await openStore(t, 'writer');
  const ids = await conversations(store, 10, 'wmode');
  const writers = await Promise.all(ids.map((id) => store.openWriter(id, 1)));
  const before = await groupSizes();
  const results = await Promise.all(writers.map((w) => w.append([draft('w'), draft('w')])));
  const after = await groupSizes();
  t.equal(after.count - before.count, 0, 'the engine committer is not used');
  t.same(results.map((r) => r.map((x) => x.seq)), ids.map(() => [1, 2]), 'dense seqs per conversation');
});

t.test('when lmdb fails one call of a group, only that call fails and its writer closes', async (t) => {
  const store = await openStore(t, 'engine');
  const ids = await conversations(store, 8, 'iso');
  const victim = ids[5]!;
  const writers = await Promise.all(ids.map((id) => store.openWriter(id, 1)));
  await Promise.all(writers.map((w, i) => w.append([draft(`first${i}`)])));

  // Fault injection into lmdb itself: the message table's put throws for the victim's rows only.
  const ctx = (store as unknown as { ctx: EngineContext }).ctx;
  const messages = ctx.tables.messages;
  const put = messages.put.bind(messages);
  let thrown = 0;
  messages.put = ((key: unknown, value: unknown, ...rest: unknown[]) => {
    if (Array.isArray(key) && key[0] === victim) {
      thrown++;
      throw new Error('injected lmdb failure');
    }
    return (put as (...a: unknown[]) => unknown)(key, value, ...rest);
  }) as typeof messages.put;
  let outcomes: PromiseSettledResult<unknown>[];
  try {
    outcomes = await Promise.allSettled(writers.map((w, i) => w.append([draft(`second${i}`), draft(`third${i}`)])));
  } finally {
    messages.put = put;
  }
  t.ok(thrown >= 1, 'the injected failure fired');
  for (const [i, id] of ids.entries()) {
    const o = outcomes[i]!;
    const page = await store.readForward(id, 0, 10);
    if (id === victim) {
      t.equal(o.status, 'rejected', 'the failed call is rejected');
      t.equal(o.status === 'rejected' ? (o.reason as StoreError).code : null, 'store.internal', 'as store.internal');
      t.equal(page.head, 1, 'the victim head did not move');
      t.equal(page.messages.length, 1, 'nothing of the failed call is stored');
      try {
        await writers[i]!.append([draft('after')]);
        t.fail('the victim writer should be closed');
      } catch (err) {
        t.equal((err as StoreError).code, 'store.internal', 'the victim writer stays closed');
      }
    } else {
      t.equal(o.status, 'fulfilled', `${id} commits`);
      t.same(page.messages.map((m) => m.seq), [1, 2, 3], `${id} has dense seqs`);
      t.equal(writers[i]!.head, 3, `${id} writer head`);
    }
  }
  // A fresh writer of the victim resumes at the durable head.
  const again = await store.openWriter(victim, 2);
  t.equal(again.head, 1, 'a new writer of the victim starts at the durable head');
  t.same((await again.append([draft('resume')])).map((r) => r.seq), [2], 'and appends densely');
});
