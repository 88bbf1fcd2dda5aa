import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';

const child = join(import.meta.dirname, '../support/embedded-crash-child.ts');

t.test('kill -9 of a process using the embedded store loses nothing it acknowledged', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const conv = 'crash-conv';
  const proc = spawn(process.execPath, ['--import', 'tsx', child, path, conv, '200'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, sig) => resolve(sig)));
  t.equal(signal, 'SIGKILL', 'the child died by SIGKILL, without closing the store');

  const acked = new Map<number, string>();
  let readAcked = false;
  for (const line of out.split('\n').filter(Boolean)) {
    const rec = JSON.parse(line) as { acked?: [number, string][]; read?: number };
    if (rec.read) readAcked = true;
    for (const [seq, id] of rec.acked ?? []) acked.set(seq, id);
  }
  t.ok(readAcked, 'the read cursor update was acknowledged');
  t.ok(acked.size > 0, `the child acknowledged ${acked.size} messages before dying`);

  const store = new EmbeddedStore({ path, bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  t.teardown(() => store.close());
  const head = await store.head(conv);
  t.ok(head >= Math.max(...acked.keys()), `head ${head} covers every acked seq`);
  const stored = new Map<number, string>();
  for (let after = 0; ; ) {
    const page = await store.readForward(conv, after, 500);
    for (const m of page.messages) stored.set(m.seq, m.messageId);
    if (page.next === null) break;
    after = page.next;
  }
  let lost = 0;
  for (const [seq, id] of acked) if (stored.get(seq) !== id) lost++;
  t.equal(lost, 0, 'every acknowledged message is stored with its id at its seq');
  t.same([...stored.keys()], Array.from({ length: stored.size }, (_, i) => i + 1), 'stored seqs are dense');
  t.same(await store.getRead('b'), [{ conversationId: conv, seq: 1 }], 'the acked cursor survived');
});

t.test('kill -9 in the middle of engine-wide group commits of many conversations loses nothing acked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const conv = 'crash-many';
  const extra = 12;
  const proc = spawn(process.execPath, ['--import', 'tsx', child, path, conv, '200', String(extra)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, sig) => resolve(sig)));
  t.equal(signal, 'SIGKILL', 'the child died by SIGKILL');

  const acked = new Map<string, Map<number, string>>();
  for (const line of out.split('\n').filter(Boolean)) {
    const rec = JSON.parse(line) as { conv?: string; acked?: [number, string][] };
    const id = rec.conv ?? conv;
    for (const [seq, mid] of rec.acked ?? []) {
      if (!acked.has(id)) acked.set(id, new Map());
      acked.get(id)!.set(seq, mid);
    }
  }
  const others = [...acked.keys()].filter((id) => id !== conv);
  t.ok(others.length > 1, `${others.length} extra conversations had acked appends before the kill`);

  const store = new EmbeddedStore({ path, bucketSize: 4, idempotencyTtlMs: 3_600_000 });
  await store.open();
  t.teardown(() => store.close());
  let lost = 0;
  let total = 0;
  for (const [id, seqs] of acked) {
    const stored = new Map<number, string>();
    for (let after = 0; ; ) {
      const page = await store.readForward(id, after, 500);
      for (const m of page.messages) stored.set(m.seq, m.messageId);
      if (page.next === null) break;
      after = page.next;
    }
    for (const [seq, mid] of seqs) {
      total++;
      if (stored.get(seq) !== mid) lost++;
    }
    t.same([...stored.keys()], Array.from({ length: stored.size }, (_, i) => i + 1), `${id}: stored seqs are dense`);
  }
  t.ok(total > 0, `${total} acked messages checked`);
  t.equal(lost, 0, 'every acknowledged message of every conversation is stored at its seq');
});
