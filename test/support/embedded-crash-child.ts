/**
 * Child process for the embedded crash test: appends batches, prints each acknowledged result as a
 * JSON line the moment `append` resolves, then kills itself with SIGKILL (no clean close).
 *
 * Arguments: path, conversation id, batches, and optionally a number of extra conversations
 * (`<conv>-1` .. `<conv>-N`) whose writers append concurrently, so the kill lands in the middle of
 * engine-wide group commits that carry several conversations (src/store/embedded/committer.ts).
 */
import { randomUUID } from 'node:crypto';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';

const [path, conv, batchesArg, extraArg] = process.argv.slice(2);
const store = new EmbeddedStore({ path: path!, bucketSize: 4, idempotencyTtlMs: 3_600_000 });
await store.open();
await store.createConversation({
  id: conv!, kind: 'direct', createdBy: 'a', createdAtMs: Date.now(),
  members: [{ userId: 'a', role: 'member' }, { userId: 'b', role: 'member' }],
});
const writer = await store.openWriter(conv!, Date.now());
await store.advanceRead('b', conv!, 1);
process.stdout.write(JSON.stringify({ read: 1 }) + '\n');
const batches = Number(batchesArg);
let i = 0;
let acks = 0;
const extra = Number(extraArg ?? 0);
for (let k = 1; k <= extra; k++) {
  const id = `${conv!}-${k}`;
  await store.createConversation({ id, kind: 'group', createdBy: 'a', createdAtMs: Date.now(), members: [{ userId: 'a', role: 'member' }] });
  const w = await store.openWriter(id, 1);
  for (let b = 0; b < batches; b++) {
    void w
      .append([{ messageId: randomUUID(), senderUser: 'a', senderDevice: 'a1', clientMsgId: `x${b}`, body: new Uint8Array([k]), sentAtMs: Date.now() }])
      .then((res) => process.stdout.write(JSON.stringify({ conv: id, acked: res.map((r) => [r.seq, r.messageId]) }) + '\n'));
  }
}
// Keep appends in flight when the kill lands: acked ones must survive, the rest may or may not.
// stdout is a pipe, which Node writes synchronously on Linux, so each printed ack reaches the parent.
for (let b = 0; b < batches; b++) {
  const drafts = Array.from({ length: 5 }, () => ({
    messageId: randomUUID(), senderUser: 'a', senderDevice: 'a1', clientMsgId: `c${i++}`,
    body: new Uint8Array([b]), sentAtMs: Date.now(),
  }));
  void writer.append(drafts).then((res) => {
    process.stdout.write(JSON.stringify({ acked: res.map((r) => [r.seq, r.messageId]) }) + '\n');
    if (++acks === 3 || b === batches - 1) process.kill(process.pid, 'SIGKILL');
  });
}
