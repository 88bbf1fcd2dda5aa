/**
 * Store benchmark workloads, engine-agnostic: they drive the Store interface only.
 */
import { randomUUID } from 'node:crypto';
import type { Store } from '../../src/store/store.js';
import type { MessageDraft } from '../../src/store/types.js';
import { latency, nowUs, pool } from '../lib/stats.js';

const BODY = new Uint8Array(100).fill(7);

export function drafts(n: number, tag: string): MessageDraft[] {
  return Array.from({ length: n }, (_, i) => ({
    messageId: randomUUID(),
    senderUser: 'alice',
    senderDevice: 'alice-phone',
    clientMsgId: `${tag}-${i}`,
    body: BODY,
    sentAtMs: Date.now(),
  }));
}

async function conversation(store: Store, id: string): Promise<void> {
  await store.createConversation({
    id, kind: 'direct', createdBy: 'alice', createdAtMs: Date.now(),
    members: [{ userId: 'alice', role: 'member' }, { userId: 'bob', role: 'member' }],
  });
}

export interface AppendFigures { msgsPerSec: number; batchP50us: number; batchP99us: number; batches: number }

/** One hot conversation, one writer, `batches` sequential group commits of `batchSize`. */
export async function hotConversation(store: Store, batchSize: number, batches: number): Promise<AppendFigures> {
  const id = `hot-${randomUUID()}`;
  await conversation(store, id);
  const writer = await store.openWriter(id, 1);
  const lat = latency();
  const start = nowUs();
  for (let b = 0; b < batches; b++) {
    const batch = drafts(batchSize, `b${b}`);
    const t0 = nowUs();
    await writer.append(batch);
    lat.record(nowUs() - t0);
  }
  const secs = (nowUs() - start) / 1e6;
  const s = lat.summary();
  return { msgsPerSec: (batchSize * batches) / secs, batchP50us: s.p50, batchP99us: s.p99, batches };
}

export interface ManyFigures {
  appendsPerSec: number;
  openWriterP50us: number;
  appendP50us: number;
  appendP99us: number;
  /** This process's CPU (user + system, all threads, lmdb's commit thread included) per append. */
  cpuUsPerAppend: number;
}

/** `count` conversations, one message each, `concurrency` in flight. Creation is not timed. */
export async function manyConversations(store: Store, count: number, concurrency: number): Promise<ManyFigures> {
  const ids = Array.from({ length: count }, () => `many-${randomUUID()}`);
  await pool(count, concurrency, (i) => conversation(store, ids[i]!));
  const openLat = latency();
  const writers = new Array<Awaited<ReturnType<Store['openWriter']>>>(count);
  await pool(count, concurrency, async (i) => {
    const t0 = nowUs();
    writers[i] = await store.openWriter(ids[i]!, 1);
    openLat.record(nowUs() - t0);
  });
  const lat = latency();
  const start = nowUs();
  const cpu0 = process.cpuUsage();
  await pool(count, concurrency, async (i) => {
    const t0 = nowUs();
    await writers[i]!.append(drafts(1, `m${i}`));
    lat.record(nowUs() - t0);
  });
  const cpu = process.cpuUsage(cpu0);
  const secs = (nowUs() - start) / 1e6;
  const s = lat.summary();
  return {
    appendsPerSec: count / secs,
    openWriterP50us: openLat.summary().p50,
    appendP50us: s.p50,
    appendP99us: s.p99,
    cpuUsPerAppend: (cpu.user + cpu.system) / count,
  };
}

export interface ReadFigures { readsPerSec: number; p50us: number; p99us: number; p999us: number }

/** Random 50-message pages from a conversation of `size` messages, forward or backward. */
export async function reads(store: Store, size: number, count: number, concurrency: number, dir: 'forward' | 'backward'): Promise<ReadFigures> {
  const id = `read-${randomUUID()}`;
  await conversation(store, id);
  const writer = await store.openWriter(id, 1);
  for (let done = 0; done < size; done += 200) await writer.append(drafts(Math.min(200, size - done), `r${done}`));
  const lat = latency();
  const start = nowUs();
  await pool(count, concurrency, async () => {
    const at = 1 + Math.floor(Math.random() * size);
    const t0 = nowUs();
    const page = dir === 'forward' ? await store.readForward(id, at, 50) : await store.readBackward(id, at, 50);
    lat.record(nowUs() - t0);
    if (page.head !== size) throw new Error(`bench: unexpected head ${page.head}`);
  });
  const secs = (nowUs() - start) / 1e6;
  const s = lat.summary();
  return { readsPerSec: count / secs, p50us: s.p50, p99us: s.p99, p999us: s.p999 };
}
