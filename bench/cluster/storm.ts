/**
 * bench/cluster storm: kill -9 a node that holds K clients with M pending messages each, and time
 * the reconnect storm until every client is back (on the surviving nodes) and caught up, checking
 * that nothing acked was lost and nothing was stored or handed over twice.
 *
 * Per run, on a fresh 3-node cluster (scylla: the store must survive the node):
 * 1. U receiving users `v<i>` with --devices devices each (`d1`, `d2`, ...: K = U x devices clients)
 *    connect to the victim node; U sender devices `w<i>/d1` connect to the two survivors (i mod 2).
 *    Raw protocol clients (bench/lib/wire.ts), one source address 127.0.0.N for receivers and one
 *    for senders.
 * 2. Prime: one message per pair. For even i the receiver's d1 sends it (so the victim registers and owns
 *    the conversation: after the kill its lease must expire and a survivor take over, fenced by
 *    epoch); for odd i the sender does (a survivor owns it).
 * 3. Fill: the receivers stop dacking; the senders send M messages to each receiver (100-byte
 *    bodies carrying (i, k)), paced at --fill-rate, until every one is acked (`sent`, durable) and
 *    was delivered live. Each receiver now has M delivered-but-unacknowledged messages: the victim's
 *    user actor holds them as pending, and the device's stored delivered cursor is behind all of them.
 * 4. kill -9 of the victim (t0). Once the process is gone every sender also sends --after more
 *    messages to its receiver (the receiver is offline then), retrying with the same cmid on retryable errors or silence, as a
 *    client must; half of them go to conversations the victim owned.
 * 5. Each receiver sees its socket drop and reconnects like a client behind a load balancer that
 *    knows the node is down: full-jitter backoff (0-500 ms, doubling to 5 s) to a survivor. After
 *    `hello` it runs `sync` rounds without cursors (so the server's stored cursor decides what is
 *    resent: all M pending), dedupes by (conv, seq) and dacks what it holds contiguously.
 * Figures from t0: all K reconnected (hello on a survivor); all K caught up (sync finished with
 * more=false, and every message acked before the kill received again on the new socket: the device
 * never dacked them, so the server must resend them all); every post-kill send acked, and held by
 * every device of its receiver. Check at the end: every message acked before or after the kill is
 * held by every device of its receiver exactly once after dedupe (lost = acked and never received;
 * not resent = a pending message that did not come again after the reconnect; duplicate = one message,
 * by (i, k), received at two different seqs; conflict = one seq carrying two messages). Entries that
 * arrived again with a seq already held (live redelivery plus sync) are counted as redeliveries:
 * that is the protocol's at-least-once delivery, removed by the dedupe.
 */
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import { pickSourceAddresses } from '../lib/proc.js';
import { median } from '../lib/stats.js';
import { int, markdownTable } from '../lib/table.js';
import { awaitHello, frameType, mintToken, openSocket, pack, unpack } from '../lib/wire.js';
import { SECRET, startCluster, type ClusterOptions, type Services } from './cluster.js';

export interface StormParams {
  clients: number;
  /** Devices per receiving user, all on the victim. */
  devices: number;
  pending: number;
  after: number;
  fillRate: number;
  victim: number;
  leaseMs: number;
  heartbeatMs: number;
  timeoutS: number;
  runs: number;
  cluster: Omit<ClusterOptions, 'services' | 'tag'>;
}

export interface StormFigures {
  clients: number;
  devices: number;
  pendingPerClient: number;
  /** ms from the kill until the last receiver saw its socket close. */
  closedAllMs: number;
  /** ms from the kill until the last receiver got `hello` on a survivor. */
  reconnectAllMs: number;
  /** Socket open -> `hello` of the reconnects: median and max. */
  helloP50Ms: number;
  helloMaxMs: number;
  /** ms from the kill until the last receiver finished sync holding every message acked before the kill. */
  caughtUpAllMs: number;
  caughtUpP50Ms: number;
  /** ms from the kill until the last post-kill send was acked, and held by its receiver. */
  afterAckedAllMs: number;
  afterHeldAllMs: number;
  ackedBeforeKill: number;
  ackedAfterKill: number;
  lost: number;
  /** Held from before the kill but not sent again after the reconnect although never dacked. */
  notResent: number;
  duplicates: number;
  conflicts: number;
  unanswered: number;
  refused: number;
  redeliveries: number;
  syncRounds: number;
  reconnectAttempts: number;
  retriedSends: number;
  errors: Record<string, number>;
  /** Close codes seen by receivers after the kill (1006: the node vanished). */
  closes: Record<string, number>;
  fillMs: number;
  complete: boolean;
}

const PRIME_K = 0xffffffff;
const BODY_BYTES = 100;
const HELLO_TIMEOUT_MS = 20_000;
const SEND_SILENCE_MS = 20_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 5_000;

const nowMs = (): number => performance.now();

function count(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

function body(i: number, k: number): Buffer {
  const b = Buffer.alloc(BODY_BYTES);
  b.writeUInt32LE(i, 0);
  b.writeUInt32LE(k, 4);
  return b;
}

interface OutMsg {
  k: number;
  to: string;
  cmid: string;
  reqId: number;
  sentAt: number;
  ackedAt: number;
  seq: number;
  refused: string | null;
  attempts: number;
  afterKill: boolean;
}

/** One device: a socket that reconnects, sends with retries, receives with dedupe. */
class Device {
  ws: WebSocket | null = null;
  connected = false;
  closing = false;
  /** Receivers: no dacks while true (the fill phase). */
  hold = false;
  urls: string[];
  attempt = 0;
  reconnectAttempts = 0;
  reconnectedAt = 0;
  /** When the first unexpected close was seen (the kill, for receivers). */
  closedAt = 0;
  /** How long the successful reconnect took from opening the socket to `hello`. */
  helloMs = 0;
  syncDoneAt = 0;
  syncing = false;
  syncRounds = 0;
  caughtUpAt = 0;
  nextReq = 1;
  readonly out = new Map<number, OutMsg>(); // by reqId
  readonly outByK = new Map<number, OutMsg>();
  /** conv:seq -> k held; k -> seq. */
  readonly held = new Map<string, number>();
  readonly seqOfK = new Map<number, number>();
  /** k -> when it was first held (ms, performance.now). */
  readonly heldAt = new Map<number, number>();
  /** Messages (k) received on a socket opened after the first unexpected close: what catch-up brought. */
  readonly receivedAgain = new Set<number>();
  private reconnecting = false;
  readonly have = new Map<string, number>();
  redeliveries = 0;
  duplicates = 0;
  conflicts = 0;
  retried = 0;
  readonly errors: Record<string, number> = {};
  readonly closes: Record<string, number> = {};
  onChange: () => void = () => {};

  constructor(
    readonly index: number,
    readonly user: string,
    readonly device: string,
    readonly localAddress: string,
    urls: string[],
  ) {
    this.urls = urls;
  }

  async connect(url: string): Promise<void> {
    const token = await mintToken(SECRET, this.user, this.device);
    const ws = openSocket(url, token, this.localAddress);
    ws.on('error', () => {});
    await awaitHello(ws, HELLO_TIMEOUT_MS);
    this.ws = ws;
    this.connected = true;
    ws.on('message', (data: Buffer) => this.onFrame(data));
    ws.on('close', (code: number) => {
      if (this.ws !== ws) return;
      this.connected = false;
      this.ws = null;
      if (this.closing) return;
      if (this.closedAt === 0) this.closedAt = nowMs();
      count(this.closes, String(code));
      this.scheduleReconnect();
    });
  }

  scheduleReconnect(): void {
    const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt++;
    setTimeout(() => void this.reconnect(), Math.random() * cap);
  }

  async reconnect(): Promise<void> {
    if (this.closing) return;
    this.reconnecting = true;
    this.reconnectAttempts++;
    const url = this.urls[(this.index + this.attempt) % this.urls.length]!;
    const opened = nowMs();
    try {
      await this.connect(url);
      if (this.reconnectedAt === 0) this.helloMs = nowMs() - opened;
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.attempt = 0;
    if (this.reconnectedAt === 0) this.reconnectedAt = nowMs();
    this.hold = false;
    // Resend what is unacknowledged (same cmid), then catch up.
    for (const m of this.outByK.values()) if (m.ackedAt === 0 && m.refused === null) this.transmit(m);
    this.sync();
    this.onChange();
  }

  sync(): void {
    if (!this.ws) return;
    this.syncing = true;
    this.syncRounds++;
    this.ws.send(pack({ t: 'sync', id: this.nextReq++ }));
  }

  send(to: string, k: number, cmid: string, afterKill: boolean): OutMsg {
    const m: OutMsg = { k, to, cmid, reqId: 0, sentAt: 0, ackedAt: 0, seq: 0, refused: null, attempts: 0, afterKill };
    this.outByK.set(k, m);
    this.transmit(m);
    return m;
  }

  transmit(m: OutMsg): void {
    if (m.attempts > 0) this.retried++;
    m.attempts++;
    m.reqId = this.nextReq++;
    m.sentAt = nowMs();
    this.out.set(m.reqId, m);
    this.ws?.send(pack({ t: 'send', id: m.reqId, to: m.to, cmid: m.cmid, body: body(this.index, m.k) }));
  }

  /** Resends sends that got no answer for a long time (their owner node died mid-request). */
  resendSilent(): void {
    if (!this.connected) return;
    const now = nowMs();
    for (const m of this.outByK.values()) if (m.ackedAt === 0 && m.refused === null && now - m.sentAt > SEND_SILENCE_MS) this.transmit(m);
  }

  private onFrame(data: Buffer): void {
    const t = frameType(data);
    if (t === 'receipt' || t === 'presence') return;
    const f = unpack(data);
    if (f === null) return;
    switch (t) {
      case 'sent': {
        const m = this.out.get(f['id'] as number);
        if (!m) return;
        this.out.delete(m.reqId);
        const seq = f['seq'] as number;
        if (m.ackedAt !== 0) {
          if (m.seq !== seq) this.duplicates++; // the same cmid stored at two places
          return;
        }
        m.ackedAt = nowMs();
        m.seq = seq;
        // The sender's own message counts as held by its device (PROTOCOL.md 3.2).
        this.hold0(f['conv'] as string, seq, m.k, false);
        this.onChange();
        return;
      }
      case 'error': {
        const code = String(f['code']);
        count(this.errors, code);
        const m = this.out.get(f['id'] as number);
        if (!m) {
          if (code === 'too_many_inflight' && this.syncing) setTimeout(() => this.sync(), 200);
          return;
        }
        this.out.delete(m.reqId);
        if (f['retry'] === true) setTimeout(() => m.ackedAt === 0 && this.connected && this.transmit(m), 200 + Math.random() * 300);
        else m.refused = code;
        return;
      }
      case 'msg':
        this.entry(f['conv'] as string, f['seq'] as number, f['body'] as Uint8Array);
        this.dack(f['conv'] as string);
        this.onChange();
        return;
      case 'sync.batch': {
        const conv = f['conv'] as string;
        for (const e of f['msgs'] as Record<string, unknown>[]) this.entry(conv, e['seq'] as number, e['body'] as Uint8Array);
        this.dack(conv);
        this.onChange();
        return;
      }
      case 'synced':
        if (f['more'] === true) return this.sync();
        this.syncing = false;
        this.syncDoneAt = nowMs();
        this.onChange();
        return;
    }
  }

  private entry(conv: string, seq: number, b: Uint8Array): void {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const k = dv.getUint32(4, true);
    if (this.reconnecting) this.receivedAgain.add(k);
    this.hold0(conv, seq, k, true);
  }

  private hold0(conv: string, seq: number, k: number, received: boolean): void {
    const key = `${conv}:${seq}`;
    const prevK = this.held.get(key);
    if (prevK !== undefined) {
      if (prevK !== k) this.conflicts++;
      else if (received) this.redeliveries++;
      return;
    }
    this.held.set(key, k);
    const prevSeq = this.seqOfK.get(k);
    if (prevSeq !== undefined && prevSeq !== seq) this.duplicates++;
    else {
      this.seqOfK.set(k, seq);
      this.heldAt.set(k, nowMs());
    }
    let have = this.have.get(conv) ?? 0;
    while (this.held.has(`${conv}:${have + 1}`)) have++;
    this.have.set(conv, have);
  }

  private lastDack = new Map<string, number>();
  private dack(conv: string): void {
    if (this.hold || !this.ws) return;
    const have = this.have.get(conv) ?? 0;
    if ((this.lastDack.get(conv) ?? 0) >= have) return;
    this.lastDack.set(conv, have);
    this.ws.send(pack({ t: 'dack', conv, seq: have }));
  }

  /** Dacks everything held (after the hold ends without a reconnect). */
  dackAll(): void {
    for (const conv of this.have.keys()) this.dack(conv);
  }

  close(): void {
    this.closing = true;
    this.ws?.terminate();
  }
}

async function pool(items: Device[], concurrency: number, fn: (d: Device) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function until(cond: () => boolean, timeoutMs: number, what: string, state: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${state()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function oneRun(p: StormParams, services: Services, runNo: number, log: (line: string) => void): Promise<StormFigures> {
  const tag = `${Date.now().toString(36)}s${runNo}`;
  const env = {
    TICKS_CLUSTER_LEASE_MS: String(p.leaseMs),
    TICKS_CLUSTER_HEARTBEAT_MS: String(p.heartbeatMs),
    ...p.cluster.env,
  };
  const cluster = await startCluster({ ...p.cluster, env, services, tag });
  const K = p.clients;
  const M = p.pending;
  const [recvAddr, sendAddr] = pickSourceAddresses(2, 40, 1000);
  const survivors = cluster.nodes.filter((_, i) => i !== p.victim).map((n) => n.wsUrl);
  const victimUrl = cluster.nodes[p.victim]!.wsUrl;
  const recv = Array.from({ length: K }, (_, i) => Array.from({ length: p.devices }, (_, j) => new Device(i, `v${i}`, `d${j + 1}`, recvAddr!, survivors)));
  const receivers = recv.flat();
  const senders = Array.from({ length: K }, (_, i) => new Device(i, `w${i}`, 'd1', sendAddr!, survivors));
  const all = [...receivers, ...senders];
  let silenceTimer: NodeJS.Timeout | null = null;
  try {
    await pool(receivers, 32, (d) => d.connect(victimUrl));
    await pool(senders, 32, (d) => d.connect(survivors[d.index % survivors.length]!));
    log(`  storm run ${runNo}: ${receivers.length} receiver devices (${K} users x ${p.devices}) on the victim n${p.victim}, ${K} senders on the survivors`);
    silenceTimer = setInterval(() => {
      for (const d of all) d.resendSilent();
    }, 1000);

    // Prime: even pairs from the receiver (the victim owns the conversation), odd from the sender.
    for (let i = 0; i < K; i++) {
      if (i % 2 === 0) recv[i]![0]!.send(`w${i}`, PRIME_K, `${tag}.p.${i}`, false);
      else senders[i]!.send(`v${i}`, PRIME_K, `${tag}.p.${i}`, false);
    }
    await until(
      () => receivers.every((r) => r.seqOfK.has(PRIME_K)) && senders.every((s) => s.seqOfK.has(PRIME_K)),
      120_000,
      'every prime acked and delivered',
      () => `receivers without it: ${receivers.filter((r) => !r.seqOfK.has(PRIME_K)).map((r) => `${r.user}/${r.device}`).slice(0, 10).join(' ')}; senders without it: ${senders.filter((x) => !x.seqOfK.has(PRIME_K)).map((x) => x.user).slice(0, 10).join(' ')}; errors ${JSON.stringify(all.reduce((acc: Record<string, number>, d) => (Object.entries(d.errors).forEach(([k, v]) => (acc[k] = (acc[k] ?? 0) + v)), acc), {}))}, unacked primes ${all.filter((d) => d.outByK.get(PRIME_K)?.ackedAt === 0).length}`,
    );

    // Fill: receivers stop dacking; senders send M messages each at fillRate.
    for (const r of receivers) r.hold = true;
    const fillStart = nowMs();
    const totalFill = K * M;
    await new Promise<void>((resolve) => {
      let n = 0;
      const tick = (): void => {
        const due = Math.min(totalFill, Math.floor(((nowMs() - fillStart) / 1000) * p.fillRate) + 1);
        while (n < due) {
          const i = n % K;
          const k = Math.floor(n / K);
          senders[i]!.send(`v${i}`, k, `${tag}.${i}.${k}`, false);
          n++;
        }
        if (n < totalFill) setTimeout(tick, 5);
        else resolve();
      };
      tick();
    });
    await until(
      () => senders.every((s) => [...s.outByK.values()].every((m) => m.ackedAt > 0 || m.refused !== null)) && receivers.every((r) => r.seqOfK.size >= M + 1),
      60_000 + (totalFill / p.fillRate) * 2000,
      'every fill message acked and delivered live',
    );
    const fillMs = nowMs() - fillStart;
    const refusedFill = senders.reduce((a, s) => a + [...s.outByK.values()].filter((m) => m.refused !== null).length, 0);
    log(`  filled ${int(totalFill)} messages in ${int(fillMs)} ms (${int(totalFill / (fillMs / 1000))}/s${refusedFill ? `, ${refusedFill} refused` : ''}); receivers hold them undacked`);

    // The kill, and the post-kill sends.
    // What each receiver must get again after it reconnects: every message acked before the kill.
    const t0 = nowMs();
    const expectBefore = senders.map((s) => [...s.outByK.values()].filter((m) => !m.afterKill && m.k !== PRIME_K && m.ackedAt > 0).map((m) => m.k));
    // Caught up: sync finished, and every message acked before the kill came again on the new socket
    // (the device never dacked them, so the server must resend them all: its stored cursor is behind).
    const caughtUp = (r: Device): boolean => r.syncDoneAt > 0 && expectBefore[r.index]!.every((k) => r.receivedAgain.has(k));
    const afterDone = (): boolean =>
      senders.every((s) => [...s.outByK.values()].every((m) => !m.afterKill || m.refused !== null || (m.ackedAt > 0 && recv[s.index]!.every((r) => r.seqOfK.has(m.k)))));
    for (const r of receivers) r.onChange = () => {
      if (r.caughtUpAt === 0 && caughtUp(r)) r.caughtUpAt = nowMs();
    };
    await cluster.kill9(p.victim);
    // Sent once the process is gone (a send already on its way to the victim's channel when it died
    // would wait for cluster.sendTimeoutMs instead, which measures that setting, not the takeover).
    for (let i = 0; i < K; i++) for (let j = 0; j < p.after; j++) senders[i]!.send(`v${i}`, M + j, `${tag}.${i}.${M + j}`, true);
    log(`  killed n${p.victim} (pid ${cluster.nodes[p.victim]!.proc.pid}) with kill -9`);
    let complete = true;
    try {
      await until(() => receivers.every((r) => r.caughtUpAt > 0) && afterDone(), p.timeoutS * 1000, 'every receiver caught up and every post-kill send acked and held');
    } catch (err) {
      complete = false;
      log(`  ${(err as Error).message}`);
    }
    // Late redeliveries (a duplicate would show up here too).
    await new Promise((r) => setTimeout(r, 2000));

    let lost = 0;
    let unanswered = 0;
    let notResent = 0;
    let refused = 0;
    let ackedBeforeKill = 0;
    let ackedAfterKill = 0;
    let afterAckedAt = t0;
    let afterHeldAt = t0;
    for (let i = 0; i < K; i++) {
      const s = senders[i]!;
      for (const m of s.outByK.values()) {
        if (m.k === PRIME_K) continue;
        if (m.refused !== null) refused++;
        else if (m.ackedAt === 0) unanswered++;
        else {
          if (m.ackedAt < t0) ackedBeforeKill++;
          else ackedAfterKill++;
          // Every recipient device must hold it, at the seq the sender was told.
          for (const r of recv[i]!) {
            if (!r.seqOfK.has(m.k) || r.seqOfK.get(m.k) !== m.seq) lost++;
            else if (!r.receivedAgain.has(m.k)) notResent++;
          }
          if (m.afterKill) {
            afterAckedAt = Math.max(afterAckedAt, m.ackedAt);
            for (const r of recv[i]!) afterHeldAt = Math.max(afterHeldAt, r.heldAt.get(m.k) ?? NaN);
          }
        }
      }
    }
    const sum = (f: (d: Device) => number): number => all.reduce((a, d) => a + f(d), 0);
    const merge = (devs: Device[], f: (d: Device) => Record<string, number>): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const d of devs) for (const [k, v] of Object.entries(f(d))) out[k] = (out[k] ?? 0) + v;
      return out;
    };
    const caughtTimes = receivers.map((r) => (r.caughtUpAt > 0 ? r.caughtUpAt - t0 : NaN));
    return {
      clients: K,
      devices: p.devices,
      pendingPerClient: M,
      closedAllMs: Math.max(...receivers.map((r) => (r.closedAt > 0 ? r.closedAt - t0 : NaN))),
      helloP50Ms: median(receivers.filter((r) => r.reconnectedAt > 0).map((r) => r.helloMs)),
      helloMaxMs: Math.max(...receivers.map((r) => r.helloMs)),
      reconnectAllMs: Math.max(...receivers.map((r) => (r.reconnectedAt > 0 ? r.reconnectedAt - t0 : NaN))),
      caughtUpAllMs: Math.max(...caughtTimes),
      caughtUpP50Ms: median(caughtTimes.filter(Number.isFinite)),
      afterAckedAllMs: afterAckedAt - t0,
      afterHeldAllMs: afterHeldAt - t0,
      ackedBeforeKill,
      ackedAfterKill,
      lost,
      notResent,
      duplicates: sum((d) => d.duplicates),
      conflicts: sum((d) => d.conflicts),
      unanswered,
      refused,
      redeliveries: sum((d) => d.redeliveries),
      syncRounds: receivers.reduce((a, r) => a + r.syncRounds, 0),
      reconnectAttempts: receivers.reduce((a, r) => a + r.reconnectAttempts, 0),
      retriedSends: sum((d) => d.retried),
      errors: merge(all, (d) => d.errors),
      closes: merge(receivers, (d) => d.closes),
      fillMs,
      complete,
    };
  } catch (err) {
    for (const x of cluster.nodes) log(`node ${x.id} log tail:\n${x.proc.tail(15)}`);
    throw err;
  } finally {
    if (silenceTimer) clearInterval(silenceTimer);
    for (const d of all) d.close();
    await cluster.stop(log);
  }
}

function runLine(f: StormFigures, runNo: number): string {
  return (
    `  storm run ${runNo}: K=${f.clients}x${f.devices} devices M=${f.pendingPerClient}: all saw the close ${int(f.closedAllMs)} ms, all reconnected ${int(f.reconnectAllMs)} ms (open->hello p50 ${int(f.helloP50Ms)} ms, max ${int(f.helloMaxMs)} ms), all caught up ${int(f.caughtUpAllMs)} ms (p50 ${int(f.caughtUpP50Ms)} ms), ` +
    `post-kill sends all acked ${int(f.afterAckedAllMs)} ms and held ${int(f.afterHeldAllMs)} ms; acked ${int(f.ackedBeforeKill)} before / ${int(f.ackedAfterKill)} after the kill: ` +
    `lost ${f.lost}, not resent ${f.notResent}, duplicates ${f.duplicates}, conflicts ${f.conflicts}, unanswered ${f.unanswered}, refused ${f.refused}; redeliveries ${int(f.redeliveries)}, ` +
    `sync rounds ${f.syncRounds}, reconnect attempts ${f.reconnectAttempts}, retried sends ${f.retriedSends}, errors ${JSON.stringify(f.errors)}, closes ${JSON.stringify(f.closes)}${f.complete ? '' : ' INCOMPLETE'}`
  );
}

export async function benchStorm(p: StormParams, services: Services, log: (line: string) => void): Promise<{ summary: unknown; report: string }> {
  const runs: StormFigures[] = [];
  const failures: string[] = [];
  for (let r = 1; r <= p.runs; r++) {
    // A run that fails (a node that does not start, priming that never completes) is said and tried once more.
    const f = await oneRun(p, services, r, log).catch((err: unknown) => {
      log(`  storm run ${r} FAILED, trying once more: ${(err as Error).message}`);
      failures.push(`run ${r}: ${(err as Error).message.split('\n')[0]}`);
      return oneRun(p, services, r, log);
    });
    log(runLine(f, r));
    runs.push(f);
  }
  const med = (f: (x: StormFigures) => number): number => median(runs.map(f));
  const tot = (f: (x: StormFigures) => number): number => runs.reduce((a, x) => a + f(x), 0);
  const m = {
    closedAllMs: med((x) => x.closedAllMs),
    reconnectAllMs: med((x) => x.reconnectAllMs),
    caughtUpAllMs: med((x) => x.caughtUpAllMs),
    caughtUpP50Ms: med((x) => x.caughtUpP50Ms),
    afterAckedAllMs: med((x) => x.afterAckedAllMs),
    afterHeldAllMs: med((x) => x.afterHeldAllMs),
    lost: tot((x) => x.lost),
    notResent: tot((x) => x.notResent),
    duplicates: tot((x) => x.duplicates),
    conflicts: tot((x) => x.conflicts),
    unanswered: tot((x) => x.unanswered),
    refused: tot((x) => x.refused),
    incomplete: runs.filter((x) => !x.complete).length,
  };
  const report = [
    `## storm: kill -9 of a node holding K=${p.clients * p.devices} clients (${p.clients} users x ${p.devices} devices) with M=${p.pending} pending (delivered, unacknowledged) messages each, plus ${p.after} sends per client after the kill; leaseMs=${p.leaseMs} (times in ms from the kill, median of ${runs.length})`,
    markdownTable(
      ['run', 'all saw the close', 'all reconnected', 'all caught up (p50)', 'post-kill sends acked / held', 'acked before / after kill', 'lost', 'not resent', 'dups', 'conflicts', 'unanswered', 'refused', 'redeliveries (deduped)', 'reconnect attempts', 'complete'],
      [
        ...runs.map((f, i) => [
          i + 1, int(f.closedAllMs), int(f.reconnectAllMs), `${int(f.caughtUpAllMs)} (${int(f.caughtUpP50Ms)})`, `${int(f.afterAckedAllMs)} / ${int(f.afterHeldAllMs)}`,
          `${int(f.ackedBeforeKill)} / ${int(f.ackedAfterKill)}`, f.lost, f.notResent, f.duplicates, f.conflicts, f.unanswered, f.refused, int(f.redeliveries), f.reconnectAttempts, f.complete ? 'yes' : 'NO',
        ]),
        ['median', int(m.closedAllMs), int(m.reconnectAllMs), `${int(m.caughtUpAllMs)} (${int(m.caughtUpP50Ms)})`, `${int(m.afterAckedAllMs)} / ${int(m.afterHeldAllMs)}`, '', m.lost, m.notResent, m.duplicates, m.conflicts, m.unanswered, m.refused, '', '', m.incomplete ? `${m.incomplete} incomplete` : 'yes'],
      ],
    ),
    ...(failures.length ? [`Failed attempts (each tried once more): ${failures.join('; ')}`] : []),
  ].join('\n');
  return { summary: { params: { clients: p.clients, devices: p.devices, pending: p.pending, after: p.after, leaseMs: p.leaseMs, heartbeatMs: p.heartbeatMs }, runs, median: m, failures }, report };
}
