/**
 * One chaos run: start K nodes, connect U users x D devices (1:1 conversations in a ring), drive
 * sends at a steady rate, inject a fault, keep the traffic going, stop it, let every send settle and
 * every device catch up, then force one more sync on every device (a reconnect: the SDK syncs until
 * the server's caught-up marker) and run the history checker. Returns figures and violations; the
 * caller (a tap test or the long runner) prints them and fails on any violation.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintHs256Token } from '../../../src/auth/mint.js';
import { configSchema } from '../../../src/config/schema.js';
import { directConversationId } from '../../../src/protocol/ids.js';
import { ChaosClient } from './client.js';
import { CHAOS_SECRET, ChaosCluster, type ChaosMode } from './cluster.js';
import type { Fault } from './faults.js';
import { History, describeViolations, type CheckResult, type Figures } from './history.js';
import type { RestartableRedis } from './redis.js';

export interface ScenarioOptions {
  name: string;
  mode: ChaosMode;
  nodes: number;
  shards: number;
  users: number;
  devicesPerUser: number;
  /** Sends per second over all clients (open loop). */
  ratePerS: number;
  /** Traffic before the fault, and after it is over. */
  beforeFaultMs: number;
  afterFaultMs: number;
  fault: Fault;
  cassandra: { contactPoints: string[]; localDataCenter: string; pid: number };
  keyspace: string;
  redis?: RestartableRedis;
  /** Chance that a received message is marked read (read receipts flow too). */
  readChance?: number;
  /**
   * Groups created before the traffic (fixed membership: `size` consecutive users of the ring, the
   * first one creating it); their members send to them like to their 1:1 conversations.
   */
  groups?: { count: number; size: number };
  /**
   * Broadcast channels created before the traffic, each by one user of the ring that every other
   * user joins (`conv.join`); only the creator posts. Live posts are at-most-once (uWS topics), so
   * the checks rely on catch-up by cursor like everything else.
   */
  channels?: { count: number };
  /** Patience for every send to settle, and for every device to catch up, after traffic stops. */
  settleTimeoutMs?: number;
  catchUpTimeoutMs?: number;
  log(line: string): void;
  /** Extra TICKS_* for the nodes. */
  env?: Record<string, string>;
  /** Keep the nodes' logs (their folder is printed) instead of deleting them. */
  keepLogs?: boolean;
  /** A sabotage run: its failure is expected, so no node logs are dumped and fewer examples are listed. */
  expectFailure?: boolean;
}

export interface Timings {
  /** From the fault's start to the first ack of a send submitted after it. */
  firstAckAfterFaultMs: number | undefined;
  /** The slowest send submitted after the fault started: submit to ack. */
  slowestAckAfterFaultMs: number | undefined;
  faultMs: number;
  /** Traffic stop to every send settled. */
  settleMs: number | undefined;
  /** Traffic stop to every device holding every acked message, without any forced reconnect. */
  catchUpMs: number | undefined;
  /** Fault start to every device caught up. */
  faultToCaughtUpMs: number | undefined;
  /** The final forced sync of every device (cut + reconnect + sync to the caught-up marker). */
  finalSyncMs: number | undefined;
}

export interface ScenarioResult {
  name: string;
  ok: boolean;
  check: CheckResult;
  timings: Timings;
  /** Problems the harness saw itself (sends that never settled, devices that never caught up). */
  harnessProblems: string[];
  reconnects: number;
  closeCodes: Record<string, number>;
  errorCodes: Record<string, number>;
  /** One message per error code. */
  errorSamples: Record<string, string>;
  summary: string;
}

const STOP_DEVICE_BACKLOG = 400;

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-chaos-'));
  const history = new History();
  const t0 = Date.now();
  const now = (): number => Date.now();
  const log = (line: string): void => o.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
  const tag = Math.random().toString(36).slice(2, 7);
  const harnessProblems: string[] = [];
  let cluster: ChaosCluster | undefined;
  const clients: ChaosClient[] = [];
  let traffic: NodeJS.Timeout | undefined;
  try {
    cluster = await ChaosCluster.start({
      nodes: o.nodes,
      shards: o.shards,
      mode: o.mode,
      cassandra: o.cassandra,
      keyspace: o.keyspace,
      ...(o.redis ? { redisUrl: o.redis.url, keyPrefix: `chaos:${tag}:` } : {}),
      dir,
      ...(o.env ? { env: o.env } : {}),
    });
    const c = cluster;
    log(`${o.nodes} node(s) up (${o.mode}, ${o.shards} shard(s) each) on ports ${c.nodes.map((n) => n.port).join(', ')}`);

    // ---- users, devices, conversations ----
    const auth = configSchema.parse({}).auth;
    const users = Array.from({ length: o.users }, (_, i) => `u${i}-${tag}`);
    const convsOf = new Map<string, string[]>(users.map((u) => [u, []]));
    /** What each user posts to: its conversations minus the channels it only reads. */
    const postsTo = new Map<string, string[]>(users.map((u) => [u, []]));
    const pairs = o.users === 2 ? [[0, 1]] : users.map((_, i) => [i, (i + 1) % o.users]);
    for (const [a, b] of pairs) {
      const conv = directConversationId(users[a!]!, users[b!]!);
      history.conversation(conv, [users[a!]!, users[b!]!]);
      for (const u of [users[a!]!, users[b!]!]) {
        convsOf.get(u)!.push(conv);
        postsTo.get(u)!.push(conv);
      }
    }
    let offset = 0;
    for (const user of users) {
      for (let d = 0; d < o.devicesPerUser; d++) {
        const device = `d${d}`;
        clients.push(
          new ChaosClient({
            user,
            device,
            urls: () => c.urls(),
            offset: offset++,
            token: () => mintHs256Token({ secret: CHAOS_SECRET, user, device, ttlS: 3600, settings: auth }),
            history,
            now,
          }),
        );
      }
    }
    const userOf = (cl: ChaosClient): string => cl.o.user;
    const readChance = o.readChance ?? 0.1;
    for (const cl of clients) {
      cl.sdk.on('message', (m) => {
        if (Math.random() < readChance) cl.sdk.markRead(m.conv, m.seq);
      });
    }
    await Promise.all(clients.map((cl) => cl.connect()));
    await waitFor(() => clients.every((cl) => cl.syncedCount > 0), 30_000, 'every client to finish its first sync');
    log(`${clients.length} clients connected and synced (${o.users} users x ${o.devicesPerUser} devices, ${pairs.length} conversations)`);
    for (let g = 0; g < (o.groups?.count ?? 0); g++) {
      const size = Math.min(o.groups!.size, o.users);
      const members = Array.from({ length: size }, (_, i) => users[(g * 2 + i) % o.users]!);
      const creator = clients.find((cl) => cl.o.user === members[0])!;
      const { conv } = await creator.sdk.createGroup({ members: members.slice(1), cmid: `group-${g}-${tag}`, name: `chaos ${g}` });
      history.conversation(conv, members);
      for (const m of members) {
        convsOf.get(m)!.push(conv);
        postsTo.get(m)!.push(conv);
      }
    }
    if (o.groups !== undefined) log(`${o.groups.count} groups of ${Math.min(o.groups.size, o.users)} members created`);
    for (let ch = 0; ch < (o.channels?.count ?? 0); ch++) {
      const owner = users[(ch * 3) % o.users]!;
      const { conv } = await clients.find((cl) => cl.o.user === owner)!.sdk.createChannel({ cmid: `channel-${ch}-${tag}`, name: `chaos channel ${ch}` });
      const readers = users.filter((u) => u !== owner);
      await Promise.all(readers.map((u) => clients.find((cl) => cl.o.user === u)!.sdk.join(conv)));
      history.conversation(conv, [owner, ...readers]);
      for (const u of [owner, ...readers]) convsOf.get(u)!.push(conv);
      postsTo.get(owner)!.push(conv);
    }
    if (o.channels !== undefined) log(`${o.channels.count} channels with ${o.users - 1} subscribers each created`);

    // ---- traffic: open loop at ratePerS ----
    let budget = 0;
    let last = Date.now();
    let skipped = 0;
    traffic = setInterval(() => {
      const t = Date.now();
      budget += ((t - last) / 1000) * o.ratePerS;
      last = t;
      while (budget >= 1) {
        budget -= 1;
        const cl = clients[Math.floor(Math.random() * clients.length)]!;
        // A device that cannot get through at all must not grow its outbox without bound.
        if (cl.sdk.pendingSends().length >= STOP_DEVICE_BACKLOG) {
          skipped++;
          continue;
        }
        const convs = postsTo.get(userOf(cl))!;
        cl.send(convs[Math.floor(Math.random() * convs.length)]!);
      }
    }, 20);

    await sleep(o.beforeFaultMs);
    log(`fault: ${o.fault.name}`);
    const faultAt = Date.now();
    await o.fault.inject({ cluster: c, clients, cassandraPid: o.cassandra.pid, redis: o.redis, log });
    const faultMs = Date.now() - faultAt;
    await sleep(o.afterFaultMs);
    clearInterval(traffic);
    traffic = undefined;
    const stopAt = Date.now();
    log(`traffic stopped: ${history.events.filter((e) => e.k === 'submit').length} sends submitted${skipped ? `, ${skipped} skipped (device backlog full)` : ''}`);

    // ---- settle, catch up, final sync ----
    let settleMs: number | undefined;
    try {
      await waitFor(() => clients.every((cl) => cl.sdk.pendingSends().length === 0), o.settleTimeoutMs ?? 60_000, 'every send to be settled');
      settleMs = Date.now() - stopAt;
      log(`every send settled ${settleMs} ms after the traffic stopped`);
    } catch (err) {
      const stuck = clients.filter((cl) => cl.sdk.pendingSends().length > 0).map((cl) => `${cl.label}: ${cl.sdk.pendingSends().length} pending, state ${cl.sdk.state}`);
      harnessProblems.push(`${(err as Error).message}: ${stuck.join('; ')}`);
    }
    const heads = history.ackedHeads();
    const behind = (): string[] =>
      clients.flatMap((cl) =>
        convsOf.get(userOf(cl))!.flatMap((conv) => {
          const head = heads.get(conv) ?? 0;
          const have = cl.sdk.cursor(conv) ?? 0;
          return have < head ? [`${cl.label} ${conv} at ${have} of ${head}`] : [];
        }),
      );
    let catchUpMs: number | undefined;
    try {
      await waitFor(() => behind().length === 0, o.catchUpTimeoutMs ?? 30_000, 'every device to hold every acked message (no forced reconnect)');
      catchUpMs = Date.now() - stopAt;
      log(`every device caught up ${catchUpMs} ms after the traffic stopped`);
    } catch (err) {
      harnessProblems.push(`${(err as Error).message}: ${behind().slice(0, 10).join('; ')}`);
    }
    // Every node still running must be serving again (a node that stopped accepting would
    // otherwise go unnoticed: its clients fail over to the others).
    const notReady = async (): Promise<string[]> => {
      const status = await Promise.all(c.nodes.map(async (n) => (n.alive ? [n.index, await n.readyStatus()] as const : null)));
      return status.flatMap((x) => (x !== null && x[1] !== 200 ? [`node ${x[0]} /readyz ${x[1] || 'no answer'}`] : []));
    };
    let unready = await notReady();
    for (let i = 0; i < 40 && unready.length > 0; i++) {
      await sleep(500);
      unready = await notReady();
    }
    if (unready.length > 0) harnessProblems.push(`nodes alive but not ready 20 s after the traffic stopped: ${unready.join('; ')}`);
    const finalAt = Date.now();
    let finalSyncMs: number | undefined;
    const marks = new Map(clients.map((cl) => [cl, cl.syncedCount]));
    for (const cl of clients) cl.cut();
    try {
      await waitFor(() => clients.every((cl) => cl.syncedCount > marks.get(cl)!), 60_000, 'every device to finish a final sync');
      finalSyncMs = Date.now() - finalAt;
      log(`final sync of every device done in ${finalSyncMs} ms`);
    } catch (err) {
      harnessProblems.push((err as Error).message);
    }
    const nodeFigures = await scrapeNodes(c);
    const stillBehind = behind();
    if (stillBehind.length > 0) harnessProblems.push(`after the final sync, devices behind the acked heads: ${stillBehind.slice(0, 10).join('; ')}`);

    // ---- check ----
    const check = history.check();
    const afterFault = ackTimesAfter(history, faultAt);
    const timings: Timings = {
      firstAckAfterFaultMs: afterFault.first,
      slowestAckAfterFaultMs: afterFault.slowest,
      faultMs,
      settleMs,
      catchUpMs,
      faultToCaughtUpMs: catchUpMs === undefined ? undefined : stopAt + catchUpMs - faultAt,
      finalSyncMs,
    };
    const closeCodes: Record<string, number> = {};
    const errorCodes: Record<string, number> = {};
    const errorSamples: Record<string, string> = {};
    let reconnects = 0;
    for (const cl of clients) {
      reconnects += cl.opened - 1;
      for (const [code, n] of cl.closeCodes) closeCodes[code] = (closeCodes[code] ?? 0) + n;
      for (const [code, n] of cl.errorCodes) errorCodes[code] = (errorCodes[code] ?? 0) + n;
      for (const [code, msg] of cl.errorSamples) errorSamples[code] ??= `${cl.label}: ${msg}`;
    }
    const ok = check.ok && harnessProblems.length === 0;
    const summary = summarize(o, check.figures, timings, reconnects, closeCodes, errorCodes, errorSamples) + '\n' + nodeFigures;
    const details = [describeViolations(check, o.expectFailure ? 2 : 5), ...harnessProblems].filter((s) => s !== '').join('\n');
    if (!ok && !o.expectFailure) {
      log(`FAILED:\n${details}`);
      for (const n of c.nodes) log(`--- node ${n.index} log tail:\n${n.tail(15)}`);
    }
    return { name: o.name, ok, check, timings, harnessProblems, reconnects, closeCodes, errorCodes, errorSamples, summary: ok ? summary : `${summary}\n${details}` };
  } finally {
    if (traffic) clearInterval(traffic);
    for (const cl of clients) cl.close();
    const stopAt = Date.now();
    await cluster?.stop();
    if (cluster) log(`nodes stopped in ${Date.now() - stopAt} ms`);
    if (o.keepLogs) o.log(`node logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** Sums the samples of `name` whose labels include `labels`, in Prometheus text. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/**
 * What the live nodes say about the run (counted since each node's last start; a killed node's
 * counts are gone): fence rejections at the store, leases lost, sends answered cluster_unavailable.
 */
async function scrapeNodes(c: ChaosCluster): Promise<string> {
  const texts = await Promise.all(c.nodes.map((n) => n.metrics()));
  const live = texts.filter((x): x is string => x !== undefined);
  const sum = (name: string, labels: Record<string, string> = {}): number => live.reduce((acc, x) => acc + metricSum(x, name, labels), 0);
  return (
    `  nodes (${live.length} of ${c.nodes.length} answered /metrics): store fence rejections stale_epoch ${sum('ticks_store_errors_total', { code: 'store.stale_epoch' })}, ` +
    `conflict ${sum('ticks_store_errors_total', { code: 'store.conflict' })}; leases lost taken_over ${sum('ticks_cluster_leases_lost_total', { reason: 'taken_over' })}, ` +
    `expired ${sum('ticks_cluster_leases_lost_total', { reason: 'expired' })}; routes unavailable ${sum('ticks_cluster_conv_routes_total', { result: 'unavailable' })}; ` +
    `shard restarts ${sum('ticks_node_shard_restarts_total')}`
  );
}

function ackTimesAfter(h: History, t: number): { first: number | undefined; slowest: number | undefined } {
  const submitted = new Map<string, number>();
  let first: number | undefined;
  let slowest: number | undefined;
  for (const e of h.events) {
    if (e.k === 'submit' && e.t >= t) submitted.set(`${e.dev} ${e.cmid}`, e.t);
    if (e.k === 'reported') {
      const s = submitted.get(`${e.dev} ${e.cmid}`);
      if (s === undefined) continue;
      submitted.delete(`${e.dev} ${e.cmid}`);
      if (first === undefined) first = e.t - t;
      slowest = Math.max(slowest ?? 0, e.t - s);
    }
  }
  return { first, slowest };
}

const ms = (v: number | undefined): string => (v === undefined ? 'never' : `${v} ms`);

function summarize(o: ScenarioOptions, f: Figures, t: Timings, reconnects: number, closeCodes: Record<string, number>, errorCodes: Record<string, number>, errorSamples: Record<string, string>): string {
  const codes = (r: Record<string, number>): string => Object.entries(r).map(([k, v]) => `${k}x${v}`).join(' ') || 'none';
  return [
    `chaos run "${o.name}": ${o.fault.name}; ${o.nodes} node(s) ${o.mode}, ${o.users} users x ${o.devicesPerUser} devices, ${o.ratePerS} sends/s`,
    `  sent ${f.sent}, acked ${f.acked}, failed ${f.failed}, unsettled ${f.unsettled}; delivered ${f.delivered} of ${f.expectedDeliveries} expected (${f.wireEntries} entries on the wire, ${f.redelivered} redelivered and dropped by the SDK); receipts ${f.receipts}`,
    `  lost acked ${f.lostAcked}, duplicates ${f.duplicates}, order violations ${f.orderViolations} (gaps ${f.gaps}), conflicts ${f.conflicts}`,
    `  recovery: first ack of a send made after the fault ${ms(t.firstAckAfterFaultMs)} after it began; slowest such send ${ms(t.slowestAckAfterFaultMs)}; fault lasted ${t.faultMs} ms`,
    `  after traffic stopped: all settled in ${ms(t.settleMs)}, all caught up in ${ms(t.catchUpMs)} (fault -> all caught up ${ms(t.faultToCaughtUpMs)}); final sync ${ms(t.finalSyncMs)}`,
    `  reconnects ${reconnects}; close codes ${codes(closeCodes)}; errors reported by the SDK ${codes(errorCodes)}`,
    ...Object.entries(errorSamples).map(([code, msg]) => `    e.g. ${code}: ${msg}`),
  ].join('\n');
}

export async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
