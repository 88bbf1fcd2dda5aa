/**
 * bench/fanout: deliveries per second and send-to-last-delivery latency of group and channel
 * fan-out, through real ticks node processes.
 *
 *   npm run bench:fanout -- [group100] [group1024] [channel] (default: all three)
 *       [--rates group100=400:800,group1024=40:80,channel=4:8]  (msgs/s per scenario; `:` = steps)
 *       [--runs 3] [--warmup 2] [--duration 8] [--grace 120] [--stall 15] [--receivers 4] [--dack-ms 100]
 *       [--subscribers 10000] [--channel-nodes 3] [--group100-convs 10] [--group1024-convs 1]
 *       [--setup frames|store] [--max-other-load 0.5] [--retries 1]
 *       [--profile [--profile-duration 40]] [--no-pin] [--runtime tsx|build] [--node-env KEY=VALUE,...]
 *
 * Scenarios:
 * - group100 / group1024: C groups of 100 / 1024 members (owner + 99 / 1023 members), one node
 *   (embedded mode). Owner c posts to group c; every other member has one device online.
 * - channel: one channel with --subscribers online subscribers (10,000 by default) spread evenly
 *   over --channel-nodes node processes in cluster mode on a private Redis (each node its own port
 *   and embedded store); the owner posts from node 0. Posts reach the other nodes as one bus publish
 *   per (channel, node), then uWS topic `ch:<conv>` inside each node.
 *
 * Set-up through the protocol (--setup frames, the default): the owner sends conv.create (and
 * member.add, 256 users at a time); channel subscribers send conv.join. --setup store writes the
 * groups straight into node 0's store before it starts (createConversation kind 'group'); it
 * exists to debug the harness when the frames are not served yet (channels need frames).
 *
 * Receivers: --receivers processes (bench/fanout/receiver.ts), each from its own loopback source
 * address 127.0.0.N (a process may hold 20,000 open files), hold the members' sockets: raw `net`
 * sockets with a minimal WebSocket client (bench/lib/raw-ws.ts; one shared read buffer, frames
 * parsed in place), since with `ws` clients the receivers' core was the limit of the channel runs.
 * The run line shows the frames per socket read (the server's per-socket batching). A channel's
 * publish window (groups.channelPublishWindowMs) is set with --node-env
 * TICKS_GROUPS_CHANNEL_PUBLISH_WINDOW_MS=<ms>; a group's fan-out window (groups.fanoutWindowMs, default
 * 0 = off: at most one fan-out per group per window, so a busy group's members get several messages per
 * socket write) with TICKS_GROUPS_FANOUT_WINDOW_MS=<ms>. bench/fanout/recv-cost.ts measures the receivers'
 * client alone (ws against raw, against a bare uWS server). They count
 * every delivery of every message per receiver and dack cumulatively every --dack-ms (the SDK
 * batches dacks every 100 ms). Open loop: message k is scheduled at t0 + k / rate and goes to
 * conversation k mod C; its body carries k and the scheduled time, so latencies are from the
 * scheduled send (coordinated omission corrected) and a delivery is matched without a lookup.
 * A sender keeps at most 60 sends unanswered (the protocol allows 64 per connection); a send
 * held back by that is still charged from its scheduled time.
 *
 * Figures per run, over the measured window (after --warmup s, for --duration s):
 * deliveries/s (deliveries that arrived in the window / duration), send->delivery latency of every
 * delivery (HDR, merged over receivers), send->last-delivery per message (the latest delivery of
 * that message over every receiver process), the nodes' CPU per delivery (/proc, all node
 * processes; Redis apart), the receivers' CPU. After the schedule, up to --grace s for stragglers
 * (a backlog that still drains is waited for; the wait ends once no delivery came for --stall s),
 * then the check: every receiver must have every acknowledged message exactly once. A run that
 * fails it is printed as FAILED and the process exits non-zero. Not failures, but reported: sends
 * the server refused (too_many_inflight when a conversation actor's mailbox is full) or left
 * unanswered (overload; nothing was acknowledged, so nothing is owed), and a copy that arrived at
 * least 3/4 of actors.deliveryRetryMs after the first (a redelivery because the dack was late:
 * at-least-once by design, the client dedupes). A copy sooner than that is a duplicate (failure).
 *
 * Dacks matter for the cost: with --dack-ms 100 (the SDK's batching) 10,000 channel subscribers
 * send up to 100,000 dacks/s (each read, decoded and written as a cursor). --dack-ms 0 (never
 * dack; channels only, since a group member that never dacks is redelivered to and disconnected)
 * measures the fan-out path alone.
 *
 * Pinning (default): nodes and Redis on CPU 0, receivers and this process (the senders) on CPU 1,
 * as bench/delivery and bench/cluster pin. The node figure that scales is CPU µs per delivery.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type WebSocket from 'ws';
import { startRedis, type RedisService } from '../../test/support/services/redis.js';
import { EmbeddedStore } from '../../src/store/embedded/embedded-store.js';
import { Recorder, mergeEncoded, type LatencySummary } from '../lib/hdr.js';
import { busyFraction, cpuJiffies, pickSourceAddresses, processCpu, processCpuUs } from '../lib/proc.js';
import { buildForBench, endChild, nextMessage, pinProcess, repoRoot, startChild, type NodeRuntime } from '../lib/processes.js';
import { scrape } from '../lib/metrics.js';
import { machine, median } from '../lib/stats.js';
import { profilesIn, summarizeProfile } from '../lib/cpuprofile.js';
import { int, markdownTable, ms, pct } from '../lib/table.js';
import { awaitHello, frameType, mintToken, openSocket, pack, unpack } from '../lib/wire.js';
import type { FromReceiver, RunReport, ToReceiver } from './messages.js';
import { SECRET, startNodes, type Nodes } from './nodes.js';
import { MAGIC, epochUs } from './body.js';

// ---- arguments -------------------------------------------------------------------------------------

const args = process.argv.slice(2);
const flag = (name: string): boolean => args.includes(`--${name}`);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
type ScenarioName = 'group100' | 'group1024' | 'channel';
const ALL: ScenarioName[] = ['group100', 'group1024', 'channel'];
const chosen = ALL.filter((s) => args.includes(s));
const SCENARIOS = chosen.length > 0 ? chosen : ALL;
const RATES: Record<ScenarioName, number[]> = { group100: [400, 800], group1024: [40, 80], channel: [4, 8] };
for (const kv of opt('rates', '').split(',').filter(Boolean)) {
  const [k, v] = kv.split('=');
  if (!ALL.includes(k as ScenarioName) || v === undefined) throw new Error(`--rates takes scenario=rate[:rate...], got ${kv}`);
  RATES[k as ScenarioName] = v.split(':').map(Number);
}
const RUNS = Number(opt('runs', '3'));
const WARMUP_S = Number(opt('warmup', '2'));
const DURATION_S = Number(opt('duration', '8'));
const GRACE_S = Number(opt('grace', '120'));
/** The wait for stragglers ends early once no delivery arrived for this long. */
const STALL_S = Number(opt('stall', '15'));
const RECEIVERS = Number(opt('receivers', '4'));
const DACK_MS = Number(opt('dack-ms', '100'));
const SUBSCRIBERS = Number(opt('subscribers', '10000'));
const CHANNEL_NODES = Number(opt('channel-nodes', '3'));
const SETUP = opt('setup', 'frames');
if (SETUP !== 'frames' && SETUP !== 'store') throw new Error('--setup frames or store');
if (DACK_MS <= 0 && SCENARIOS.some((x) => x !== 'channel')) throw new Error('--dack-ms 0 is for channels only (a group member that never dacks is redelivered to, then disconnected)');
const PIN = !flag('no-pin');
const RUNTIME = opt('runtime', 'tsx') as NodeRuntime;
if (RUNTIME !== 'tsx' && RUNTIME !== 'build') throw new Error('--runtime tsx or build');
const NODE_ENV: Record<string, string> = Object.fromEntries(
  opt('node-env', '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1 || !kv.startsWith('TICKS_')) throw new Error(`--node-env takes TICKS_KEY=VALUE pairs, got ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
);
const MAX_OTHER_LOAD = Number(opt('max-other-load', '0.5'));
const RETRIES = Number(opt('retries', '1'));
const PROFILE = flag('profile');
/** The profiled run is longer, so that the measured window dominates the profile (which also holds start-up and connecting). */
const PROFILE_DURATION_S = Number(opt('profile-duration', '40'));
/** actors.deliveryRetryMs of the nodes (default 2000; --node-env may change it). */
const RETRY_MS = Number(NODE_ENV.TICKS_ACTORS_DELIVERY_RETRY_MS ?? '2000');
const SERVER_CPU = PIN ? 0 : null;
const GEN_CPU = PIN ? 1 : null;
const BODY_BYTES = 100;
/** Unanswered sends per sender socket (protocol limit MAX_INFLIGHT_REQUESTS = 64, some margin). */
const MAX_INFLIGHT = 60;

interface Scenario {
  name: ScenarioName;
  kind: 'group' | 'channel';
  /** Conversations, each with one owner (the sender) and `receivers` other members online. */
  convs: number;
  receivers: number;
  nodes: number;
}

function scenarioOf(name: ScenarioName): Scenario {
  switch (name) {
    case 'group100':
      return { name, kind: 'group', convs: Number(opt('group100-convs', '10')), receivers: 99, nodes: 1 };
    case 'group1024':
      return { name, kind: 'group', convs: Number(opt('group1024-convs', '1')), receivers: 1023, nodes: 1 };
    case 'channel':
      return { name, kind: 'channel', convs: 1, receivers: SUBSCRIBERS, nodes: CHANNEL_NODES };
  }
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);

// ---- receivers (children) --------------------------------------------------------------------------

let receivers: ChildProcess[] = [];
let sources: string[] = [];

type Fatal = { t: 'fatal'; error: string };
const isT =
  <T extends FromReceiver>(t: T['t']) =>
  (m: unknown): m is T | Fatal =>
    (m as { t?: string }).t === t || (m as { t?: string }).t === 'fatal';

async function toAll<T extends FromReceiver>(msgs: ToReceiver[], t: T['t'], timeoutMs: number): Promise<T[]> {
  const answers = receivers.map((g) => nextMessage(g, isT<T>(t), timeoutMs));
  receivers.forEach((g, i) => g.send(msgs[i]!));
  const out = await Promise.all(answers);
  for (const a of out) if (a.t === 'fatal') throw new Error(`receiver failed: ${(a as Fatal).error}`);
  return out as T[];
}

// ---- senders (owners, in this process) -------------------------------------------------------------

interface Owner {
  user: string;
  ws: WebSocket;
  conv: string;
  inflight: number;
  backlog: number[];
  waiters: Map<number, (f: Record<string, unknown>) => void>;
}

let nextReq = 1_000_000;

function request(o: Owner, frame: Record<string, unknown>, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const id = nextReq++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      o.waiters.delete(id);
      reject(new Error(`${String(frame['t'])} of ${o.user}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    o.waiters.set(id, (f) => {
      clearTimeout(timer);
      resolve(f);
    });
    o.ws.send(pack({ ...frame, id }));
  });
}

async function expectOk(o: Owner, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  const f = await request(o, frame);
  if (f['t'] !== 'conv.ok') throw new Error(`${String(frame['t'])} answered ${String(f['t'])} ${String(f['code'] ?? '')}: ${String(f['msg'] ?? '')}`);
  return f;
}

const ownerName = (c: number): string => `o${c}`;
const memberName = (s: Scenario, c: number, i: number): string => (s.kind === 'channel' ? `s${i}` : `m${c}x${i}`);
const storeConvId = (tag: string, c: number): string => `g:fanout${tag}c${c}`;

// ---- one run ---------------------------------------------------------------------------------------

interface Figures {
  scenario: ScenarioName;
  rate: number;
  members: number;
  convs: number;
  nodes: number;
  receivers: number;
  messages: number;
  acked: number;
  refused: Record<string, number>;
  deliveries: number;
  expected: number;
  deliveredPerS: number;
  delivery: LatencySummary;
  last: LatencySummary;
  ack: LatencySummary;
  /** Messages (scheduled in the window) that reached every receiver, of those acked. */
  complete: number;
  missing: number;
  receiversMissing: number;
  missingExamples: string[];
  duplicates: number;
  retried: number;
  foreign: number;
  outOfOrder: number;
  closes: Record<string, number>;
  errors: Record<string, number>;
  connectFailures: number;
  joinFailures: number;
  nodeUsPerDelivery: number;
  nodeCores: number;
  nodeSysShare: number;
  redisUsPerDelivery: number | null;
  recvUsPerDelivery: number;
  recvSysShare: number;
  /** Frames the receivers got per socket read (arm to report): the server's per-socket batching. */
  framesPerRead: number;
  recvCpu1: number;
  otherLoad: number;
  /** Frames the senders received from arm to the end of the run, by type. */
  ownerFrames: Record<string, number>;
  /** Frames other than bench messages the receivers got after arm, by type. */
  receiverFrames: Record<string, number>;
  /** ticks_channel_publishes_total of every node at the end of the run, by `scope:result`. */
  channelPublishes: Record<string, number>;
  /** The measured window on the monotonic clock (µs), for slicing CPU profiles. */
  windowMono: { fromUs: number; toUs: number } | null;
  ok: boolean;
}

async function oneRun(s: Scenario, rate: number, runNo: number, redis: RedisService | null, profileDir: string | null, durationS = DURATION_S): Promise<Figures> {
  const tag = `${Date.now().toString(36)}${runNo}`;
  const tagNum = (Date.now() ^ (runNo * 0x9e3779b1)) >>> 0;
  const members = s.receivers + 1;
  const prepare =
    SETUP === 'store' && s.kind === 'group'
      ? async (path: string): Promise<void> => {
          const store = new EmbeddedStore({ path, bucketSize: 1000, idempotencyTtlMs: 7 * 24 * 3600 * 1000 });
          await store.open();
          try {
            for (let c = 0; c < s.convs; c++) {
              await store.createConversation({
                id: storeConvId(tag, c),
                kind: 'group',
                createdBy: ownerName(c),
                createdAtMs: Date.now(),
                members: [{ userId: ownerName(c), role: 'owner' as const }, ...Array.from({ length: s.receivers }, (_, i) => ({ userId: memberName(s, c, i), role: 'member' as const }))],
              });
            }
          } finally {
            await store.close();
          }
        }
      : undefined;
  if (SETUP === 'store' && s.kind === 'channel') throw new Error('--setup store covers groups only (channel subscribers join with conv.join)');
  const cluster: Nodes = await startNodes({
    count: s.nodes,
    redisUrl: s.nodes > 1 ? redis!.url : null,
    tag,
    cpu: SERVER_CPU,
    runtime: RUNTIME,
    env: NODE_ENV,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    ...(prepare ? { prepare } : {}),
  });
  const owners: Owner[] = [];
  let connected = false;
  try {
    const urls = cluster.nodes.map((n) => n.wsUrl);
    // Owners (senders) on node 0, from 127.0.0.1.
    for (let c = 0; c < s.convs; c++) {
      const user = ownerName(c);
      const ws = openSocket(urls[0]!, await mintToken(SECRET, user, 'd1', 24 * 3600), '127.0.0.1');
      ws.on('error', () => {});
      await awaitHello(ws, 30_000);
      const o: Owner = { user, ws, conv: s.kind === 'group' && SETUP === 'store' ? storeConvId(tag, c) : '', inflight: 0, backlog: [], waiters: new Map() };
      ws.on('message', (data: Buffer) => onOwnerFrame(o, data));
      owners.push(o);
    }
    // Create the conversations through the protocol.
    if (SETUP === 'frames') {
      for (let c = 0; c < s.convs; c++) {
        const o = owners[c]!;
        const created = await expectOk(o, { t: 'conv.create', cmid: `create-${tag}-${c}`, kind: s.kind, name: `bench ${s.name} ${c}` });
        o.conv = created['conv'] as string;
        if (s.kind === 'group') {
          const users = Array.from({ length: s.receivers }, (_, i) => memberName(s, c, i));
          for (let i = 0; i < users.length; i += 256) await expectOk(o, { t: 'member.add', conv: o.conv, users: users.slice(i, i + 256) });
        }
      }
    }
    // Receivers: user j of the flattened list -> receiver process j mod R, node j mod K.
    const all: { user: string; conv: number }[] = [];
    for (let c = 0; c < s.convs; c++) for (let i = 0; i < s.receivers; i++) all.push({ user: memberName(s, c, i), conv: c });
    const perRecv = receivers.map(() => ({ users: [] as string[], nodeOf: [] as number[], convOf: [] as number[] }));
    all.forEach((x, j) => {
      const p = perRecv[j % receivers.length]!;
      p.users.push(x.user);
      p.nodeOf.push(j % s.nodes);
      p.convOf.push(x.conv);
    });
    const t0c = Date.now();
    const ready = await toAll<Extract<FromReceiver, { t: 'ready' }>>(
      perRecv.map((p, i) => ({ t: 'connect', urls, localAddress: sources[i]!, secret: SECRET, users: p.users, nodeOf: p.nodeOf, convOf: p.convOf, concurrency: 64, dackMs: DACK_MS })),
      'ready',
      15 * 60_000,
    );
    connected = true;
    let connectFailures = 0;
    for (const r of ready) {
      connectFailures += r.failed;
      if (r.failed > 0) log(`  connect failures: ${JSON.stringify(r.failures)}`);
    }
    log(`  ${int(all.length - connectFailures)} receivers connected in ${((Date.now() - t0c) / 1000).toFixed(1)} s`);
    let joinFailures = 0;
    if (s.kind === 'channel') {
      const t0j = Date.now();
      const joined = await toAll<Extract<FromReceiver, { t: 'joined' }>>(
        receivers.map(() => ({ t: 'join', convs: owners.map((o) => o.conv), concurrency: 32 })),
        'joined',
        15 * 60_000,
      );
      for (const j of joined) {
        joinFailures += j.failed;
        if (j.failed > 0) log(`  join failures: ${JSON.stringify(j.failures)}`);
      }
      log(`  ${int(all.length - joinFailures)} subscribers joined in ${((Date.now() - t0j) / 1000).toFixed(1)} s`);
    }
    // Membership events (groups) reach the members and are dacked before the measured run.
    await sleep(1500);

    const total = Math.floor((WARMUP_S + durationS) * rate);
    const startUs = epochUs() + 500_000;
    const intervalUs = 1e6 / rate;
    const measureFromUs = startUs + WARMUP_S * 1e6;
    const measureToUs = measureFromUs + durationS * 1e6;
    ownerFrames = {};
    await toAll(receivers.map(() => ({ t: 'arm', convs: s.convs, tag: tagNum, messages: total, measureFromUs, measureToUs, retryMs: RETRY_MS })), 'armed', 30_000);

    // CPU readings at both ends of the window.
    const nodePids = cluster.nodes.map((n) => n.proc.pid);
    type Mark = { nodes: number; nodesSys: number; redis: number | null; mono: number; recv: number; recvSys: number; self: number; cpu0: ReturnType<typeof cpuJiffies>; cpu1: ReturnType<typeof cpuJiffies> };
    const marks: Mark[] = [];
    const mark = (): void => {
      const self = process.cpuUsage();
      marks.push({
        mono: Number(process.hrtime.bigint() / 1000n),
        nodes: nodePids.reduce((a, p) => a + (processCpuUs(p) ?? 0), 0),
        nodesSys: nodePids.reduce((a, p) => a + (processCpu(p)?.systemUs ?? 0), 0),
        redis: s.nodes > 1 && redis ? processCpuUs(redis.pid) : null,
        recv: receivers.reduce((a, g) => a + (processCpuUs(g.pid!) ?? 0), 0),
        recvSys: receivers.reduce((a, g) => a + (processCpu(g.pid!)?.systemUs ?? 0), 0),
        self: self.user + self.system,
        cpu0: cpuJiffies(0),
        cpu1: cpuJiffies(1),
      });
    };
    const timers = [setTimeout(mark, (measureFromUs - epochUs()) / 1000), setTimeout(mark, (measureToUs - epochUs()) / 1000)];

    // The schedule.
    const ackedSet = new Uint8Array(total);
    const ackRec = new Recorder();
    const refused: Record<string, number> = {};
    const schedOf = (k: number): number => startUs + k * intervalUs;
    const body = (k: number): Buffer => {
      const b = Buffer.alloc(BODY_BYTES);
      MAGIC.copy(b, 0);
      b.writeUInt32LE(tagNum, 4);
      b.writeUInt32LE(k, 8);
      b.writeDoubleLE(schedOf(k), 16);
      return b;
    };
    const sendNow = (o: Owner, k: number): void => {
      o.inflight++;
      o.ws.send(pack({ t: 'send', id: k, conv: o.conv, cmid: `${tag}.${k}`, body: body(k) }));
    };
    onAnswer = (o, k, f) => {
      o.inflight--;
      if (f['t'] === 'sent') {
        if (k < total && !ackedSet[k]) {
          ackedSet[k] = 1;
          const sched = schedOf(k);
          if (sched >= measureFromUs && sched < measureToUs) ackRec.record(epochUs() - sched);
        }
      } else refused[String(f['code'])] = (refused[String(f['code'])] ?? 0) + 1;
      const next = o.backlog.shift();
      if (next !== undefined) sendNow(o, next);
    };
    let next = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const due = Math.min(total, Math.floor((epochUs() - startUs) / intervalUs) + 1);
        while (next < due) {
          const k = next++;
          const o = owners[k % s.convs]!;
          if (o.inflight >= MAX_INFLIGHT) o.backlog.push(k);
          else sendNow(o, k);
        }
        if (next < total) setTimeout(tick, 1);
        else resolve();
      };
      setTimeout(tick, Math.max(0, (startUs - epochUs()) / 1000));
    });
    // Wait for the last answers (bounded), then for the receivers to have every acked message.
    const graceEnd = Date.now() + GRACE_S * 1000;
    while (Date.now() < graceEnd && owners.some((o) => o.inflight > 0 || o.backlog.length > 0)) await sleep(20);
    // Both CPU readings are taken (a timer on a busy core may fire a little late).
    while (marks.length < 2 && epochUs() < measureToUs + 5e6) await sleep(10);
    for (const t of timers) clearTimeout(t);
    const ackedList: number[] = [];
    for (let k = 0; k < total; k++) if (ackedSet[k]) ackedList.push(k);
    const reports = await toAll<RunReport>(receivers.map(() => ({ t: 'report', acked: ackedList, untilEpochMs: graceEnd, stallMs: STALL_S * 1000 })), 'report', GRACE_S * 1000 + 120_000);

    // Node metrics (diagnosis of a failed run): channel publishes by scope and result, summed.
    const channelPublishes: Record<string, number> = {};
    if (s.kind === 'channel') {
      const series = await Promise.all(cluster.nodes.map((n) => scrape(n.metricsUrl).catch(() => null)));
      for (const sr of series) {
        if (sr === null) continue;
        for (const [key, v] of sr) {
          const m = /^ticks_channel_publishes_total\{(.*)\}$/.exec(key);
          if (!m) continue;
          const scope = /scope="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
          const result = /result="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
          channelPublishes[`${scope}:${result}`] = (channelPublishes[`${scope}:${result}`] ?? 0) + v;
        }
      }
    }
    // Merge: per message, the latest delivery and how many receivers got it.
    const lastUs = new Float64Array(total).fill(-1);
    const countOf = new Uint32Array(total);
    for (const r of reports) {
      for (let k = 0; k < total; k++) {
        if (r.lastUs[k]! > lastUs[k]!) lastUs[k] = r.lastUs[k]!;
        countOf[k]! += r.countOf[k]!;
      }
    }
    const lastRec = new Recorder();
    let complete = 0;
    const perConv = all.length / s.convs;
    for (let k = 0; k < total; k++) {
      const sched = schedOf(k);
      if (!ackedSet[k] || sched < measureFromUs || sched >= measureToUs) continue;
      if (countOf[k]! >= perConv) {
        complete++;
        lastRec.record(lastUs[k]!);
      }
    }
    const sum = (f: (r: RunReport) => number): number => reports.reduce((a, r) => a + f(r), 0);
    const merge = (f: (r: RunReport) => Record<string, number>): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of reports) for (const [k, v] of Object.entries(f(r))) out[k] = (out[k] ?? 0) + v;
      return out;
    };
    const deliveredInWindow = sum((r) => r.deliveredInWindow);
    const [a, b] = marks.length === 2 ? marks : [undefined, undefined];
    const per = (us: number): number => us / Math.max(1, deliveredInWindow);
    const nodeCpu = a && b ? b.nodes - a.nodes : NaN;
    const redisCpu = a && b && a.redis !== null && b.redis !== null ? b.redis - a.redis : null;
    const ours = a && b ? nodeCpu + (redisCpu ?? 0) + (b.recv - a.recv) + (b.self - a.self) : NaN;
    const missing = sum((r) => r.missing);
    const duplicates = sum((r) => r.duplicates);
    const foreign = sum((r) => r.foreign);
    const f: Figures = {
      scenario: s.name,
      rate,
      members,
      convs: s.convs,
      nodes: s.nodes,
      receivers: sum((r) => r.receivers),
      messages: total,
      acked: ackedList.length,
      refused,
      deliveries: sum((r) => r.delivered),
      expected: ackedList.length * perConv,
      deliveredPerS: deliveredInWindow / durationS,
      delivery: mergeEncoded(reports.map((r) => r.deliveryHist)),
      last: lastRec.summary(),
      ack: ackRec.summary(),
      complete,
      missing,
      receiversMissing: sum((r) => r.receiversMissing),
      missingExamples: reports.flatMap((r) => r.missingExamples).slice(0, 5),
      duplicates,
      retried: sum((r) => r.retried),
      foreign,
      outOfOrder: sum((r) => r.outOfOrder),
      closes: merge((r) => r.closes),
      errors: merge((r) => r.errors),
      connectFailures,
      joinFailures,
      nodeUsPerDelivery: per(nodeCpu),
      nodeCores: nodeCpu / (durationS * 1e6),
      nodeSysShare: a && b ? (b.nodesSys - a.nodesSys) / Math.max(1, nodeCpu) : NaN,
      redisUsPerDelivery: redisCpu === null ? null : per(redisCpu),
      recvUsPerDelivery: a && b ? per(b.recv - a.recv) : NaN,
      recvSysShare: a && b ? (b.recvSys - a.recvSys) / Math.max(1, b.recv - a.recv) : NaN,
      framesPerRead: (sum((r) => r.delivered) + sum((r) => Object.values(r.frames).reduce((p, q) => p + q, 0))) / Math.max(1, sum((r) => r.reads)),
      recvCpu1: a && b ? busyFraction(a.cpu1, b.cpu1) : NaN,
      otherLoad: a && b ? busyFraction(a.cpu0, b.cpu0) + busyFraction(a.cpu1, b.cpu1) - ours / (durationS * 1e6) : NaN,
      channelPublishes,
      ownerFrames: { ...ownerFrames },
      receiverFrames: merge((r) => r.frames),
      windowMono: a && b ? { fromUs: a.mono, toUs: b.mono } : null,
      ok: false,
    };
    // Exactly once for every acknowledged message. Reported apart, not failures: sends refused or
    // left unanswered (overload answers, retryable; nothing was written for them) and
    // redeliveries after the retry delay (at-least-once by design; the client dedupes).
    f.ok = missing === 0 && duplicates === 0 && foreign === 0 && connectFailures === 0 && joinFailures === 0 && Object.keys(f.closes).length === 0;
    if (!f.ok) {
      // What the nodes said (warnings such as a failed channel-interest lookup), for the diagnosis.
      for (const n of cluster.nodes) {
        const lines = n.proc.tail(400).split('\n').filter((l) => /"level":(40|50|60)|warn|error/i.test(l)).slice(-6);
        if (lines.length) log(`  node ${n.id} warnings (last ${lines.length}):\n    ${lines.map((l) => l.slice(0, 400)).join('\n    ')}`);
      }
    }
    return f;
  } catch (err) {
    for (const n of cluster.nodes) log(`node ${n.id} log tail:\n${n.proc.tail(15)}`);
    throw err;
  } finally {
    onAnswer = null;
    for (const o of owners) o.ws.terminate();
    if (connected) await toAll(receivers.map(() => ({ t: 'disconnect' })), 'disconnected', 120_000).catch((err: unknown) => log(`  disconnect: ${(err as Error).message}`));
    await cluster.stop(log);
  }
}

let onAnswer: ((o: Owner, k: number, f: Record<string, unknown>) => void) | null = null;

/** Frames the senders got during a run, by type (receipts fanned back to the sender cost the node too). */
let ownerFrames: Record<string, number> = {};

function onOwnerFrame(o: Owner, data: Buffer): void {
  const t = frameType(data);
  ownerFrames[t] = (ownerFrames[t] ?? 0) + 1;
  if (t !== 'sent' && t !== 'error' && t !== 'conv.ok') return;
  const f = unpack(data);
  if (f === null || typeof f['id'] !== 'number') return;
  const id = f['id'];
  const w = o.waiters.get(id);
  if (w) {
    o.waiters.delete(id);
    w(f);
    return;
  }
  onAnswer?.(o, id, f);
}

// ---- report ----------------------------------------------------------------------------------------

function runLine(f: Figures, runNo: number): string {
  const bad = [
    f.missing ? `MISSING ${int(f.missing)} (${f.receiversMissing} receivers, e.g. ${f.missingExamples.join(' ')})` : '',
    f.duplicates ? `DUPLICATES ${int(f.duplicates)}` : '',
    f.retried ? `redelivered after the retry delay ${int(f.retried)}` : '',
    f.foreign ? `FOREIGN ${int(f.foreign)}` : '',
    f.acked < f.messages ? `unacked ${f.messages - f.acked} ${JSON.stringify(f.refused)}` : '',
    Object.keys(f.closes).length ? `closes ${JSON.stringify(f.closes)}` : '',
    Object.keys(f.errors).length ? `errors ${JSON.stringify(f.errors)}` : '',
    f.connectFailures ? `connect failures ${f.connectFailures}` : '',
    f.joinFailures ? `join failures ${f.joinFailures}` : '',
    Object.keys(f.channelPublishes).length ? `channel publishes ${JSON.stringify(f.channelPublishes)}` : '',
  ].filter(Boolean).join('; ');
  return (
    `  ${f.scenario} ${int(f.rate)} msgs/s run ${runNo}: ${int(f.deliveredPerS)} deliveries/s (target ${int(f.rate * (f.members - 1))}), ` +
    `${int(f.deliveries)} of ${int(f.expected)} deliveries, send->delivery p50/p99 ${ms(f.delivery.p50)}/${ms(f.delivery.p99)} ms, ` +
    `send->last p50/p99 ${ms(f.last.p50)}/${ms(f.last.p99)} ms (${f.complete} complete msgs), ack p50/p99 ${ms(f.ack.p50)}/${ms(f.ack.p99)} ms, ` +
    `nodes ${f.nodeUsPerDelivery.toFixed(2)} µs/delivery (${f.nodeCores.toFixed(2)} cores, ${pct(f.nodeSysShare)} kernel)` +
    `${f.redisUsPerDelivery !== null ? `, redis ${f.redisUsPerDelivery.toFixed(3)} µs/delivery` : ''}, receivers ${f.recvUsPerDelivery.toFixed(2)} µs/delivery (${pct(f.recvSysShare)} kernel; CPU1 ${pct(f.recvCpu1)}; ${f.framesPerRead.toFixed(2)} frames/read), ` +
    `other load ${f.otherLoad.toFixed(2)} cores, senders got ${JSON.stringify(f.ownerFrames)}, receivers also got ${JSON.stringify(f.receiverFrames)}, out-of-order ${f.outOfOrder} ${f.ok ? 'ok' : 'FAILED'}${bad ? `: ${bad}` : ''}`
  );
}

interface Step {
  s: Scenario;
  rate: number;
  runs: Figures[];
}

/** The median run delivered >= 95% of the target deliveries/s and every send was answered. */
function keepsUp(st: Step): boolean {
  const target = st.rate * st.s.receivers;
  return median(st.runs.map((x) => x.deliveredPerS)) >= 0.95 * target && median(st.runs.map((x) => x.messages - x.acked)) === 0;
}

async function main(): Promise<void> {
  if (cpus().length < 2 && PIN) throw new Error('pinning needs 2 CPUs (servers on 0, receivers on 1); pass --no-pin');
  const started = new Date();
  console.log(`# bench/fanout  ${started.toISOString()}  ${machine()}`);
  console.log(
    `scenarios=${SCENARIOS.join(',')} rates=${JSON.stringify(RATES)} runs=${RUNS} warmup=${WARMUP_S}s duration=${DURATION_S}s grace=${GRACE_S}s receivers=${RECEIVERS} dack=${DACK_MS}ms setup=${SETUP} runtime=${RUNTIME} ` +
      `pin=${PIN ? 'nodes+redis CPU0, receivers+senders CPU1' : 'off'} body=${BODY_BYTES}B${Object.keys(NODE_ENV).length ? ` node-env=${JSON.stringify(NODE_ENV)}` : ''}`,
  );
  if (PIN) await pinProcess(process.pid, 1);
  if (RUNTIME === 'build') await buildForBench(log);
  sources = pickSourceAddresses(RECEIVERS, 2, 1000);
  // BENCH_RECEIVER_NODE_ARGS (e.g. --cpu-prof) lets the receivers themselves be profiled.
  const recvArgs = process.env.BENCH_RECEIVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  receivers = Array.from({ length: RECEIVERS }, () => startChild(join(repoRoot, 'bench/fanout/receiver.ts'), GEN_CPU, recvArgs));
  let redis: RedisService | null = null;
  const steps: Step[] = [];
  const profiles: string[] = [];
  let failed = false;
  try {
    for (const name of SCENARIOS) {
      const s = scenarioOf(name);
      if (s.nodes > 1 && redis === null) {
        redis = await startRedis();
        if (SERVER_CPU !== null) await pinProcess(redis.pid, SERVER_CPU);
        log(`(started Redis ${redis.url}, pid ${redis.pid}${SERVER_CPU !== null ? `, pinned to CPU ${SERVER_CPU}` : ''})`);
      }
      for (const rate of RATES[name]) {
        const step: Step = { s, rate, runs: [] };
        steps.push(step);
        for (let r = 1; r <= RUNS; r++) {
          log(`${name}: ${s.convs} x ${s.receivers + 1} members, ${s.nodes} node(s), ${int(rate)} msgs/s, run ${r}`);
          try {
            let f = await oneRun(s, rate, r, redis, null);
            log(runLine(f, r));
            // The box is shared: a run during which other processes took a lot of CPU is repeated
            // (bounded), keeping the least disturbed attempt (as bench/delivery does).
            for (let retry = 1; retry <= RETRIES && f.otherLoad > MAX_OTHER_LOAD; retry++) {
              log(`  (other processes used ${f.otherLoad.toFixed(2)} cores during that run; repeating it, attempt ${retry + 1})`);
              const again = await oneRun(s, rate, r, redis, null);
              log(runLine(again, r));
              if (!again.ok) failed = true;
              if (again.otherLoad < f.otherLoad) f = again;
            }
            if (!f.ok) failed = true;
            step.runs.push(f);
          } catch (err) {
            failed = true;
            log(`  run ${r} of ${name} could not run: ${(err as Error).stack ?? String(err)}`);
            break;
          }
        }
      }
      if (PROFILE) {
        const rate = RATES[name][RATES[name].length - 1]!;
        const pdir = mkdtempSync(join(tmpdir(), 'ticks-bench-fanout-prof-'));
        log(`profiling ${name} at ${int(rate)} msgs/s (one ${PROFILE_DURATION_S} s run, node --cpu-prof)`);
        const f = await oneRun(s, rate, 9, redis, pdir, PROFILE_DURATION_S);
        log(runLine(f, 9) + ' (profiled)');
        for (const file of profilesIn(pdir)) {
          const p = summarizeProfile(file, repoRoot, 25, f.windowMono ?? undefined);
          if (p.busyMs < 1000) continue;
          profiles.push(`${name} profile ${file.split('/').pop()} (measured window only): busy ${int(p.busyMs)} ms of ${int(p.totalMs)} ms sampled`);
          profiles.push('  by area: ' + p.areas.map((x) => `${x.name} ${pct(x.share)}`).join(', '));
          profiles.push('  self time:');
          for (const fn of p.functions) profiles.push(`    ${pct(fn.share).padStart(4)}  ${fn.name}`);
          profiles.push('  inclusive time:');
          for (const fn of p.inclusive) profiles.push(`    ${pct(fn.share).padStart(4)}  ${fn.name}`);
        }
        log(`(profiles kept in ${pdir})`);
      }
    }
  } finally {
    await Promise.all(receivers.map((g) => endChild(g)));
    await redis?.stop();
  }

  console.log('');
  console.log(`## fanout (median of ${RUNS} runs; dacks ${DACK_MS > 0 ? `every ${DACK_MS} ms per socket` : 'never'}; latencies from the scheduled send; µs of CPU per delivery in the measured window)`);
  const rows = steps
    .filter((st) => st.runs.length > 0)
    .map((st) => {
      const med = (f: (x: Figures) => number): number => median(st.runs.map(f));
      const f0 = st.runs[0]!;
      const allOk = st.runs.every((x) => x.ok);
      return [
        st.s.name,
        st.s.kind === 'channel' ? `${int(st.s.receivers)} subscribers` : `${st.s.convs} x ${int(f0.members)}`,
        st.s.nodes,
        int(st.rate),
        int(med((x) => x.acked)),
        int(med((x) => x.deliveries)),
        `**${int(med((x) => x.deliveredPerS))}**`,
        `${ms(med((x) => x.delivery.p50))} / ${ms(med((x) => x.delivery.p99))}`,
        `${ms(med((x) => x.last.p50))} / ${ms(med((x) => x.last.p99))}`,
        med((x) => x.nodeUsPerDelivery).toFixed(2),
        med((x) => x.nodeCores).toFixed(2),
        med((x) => x.recvUsPerDelivery).toFixed(2),
        med((x) => x.otherLoad).toFixed(2),
        `${int(med((x) => x.messages - x.acked))} / ${int(med((x) => x.retried))}`,
        keepsUp(st) ? 'yes' : 'no',
        allOk ? `yes (${st.runs.length} runs)` : `**NO**: ${st.runs.filter((x) => !x.ok).length} of ${st.runs.length} runs failed`,
      ];
    });
  console.log(
    markdownTable(
      ['scenario', 'members / subscribers', 'node processes', 'msgs/s', 'messages acked', 'deliveries', 'deliveries/s', 'send->delivery p50 / p99 ms', 'send->last delivery p50 / p99 ms', 'node µs/delivery', 'node cores', 'receiver µs/delivery', 'other load', 'sends refused or unanswered / redelivered', 'keeps up', 'exactly once'],
      rows,
    ),
  );
  console.log('');
  for (const line of profiles) console.log(line);
  if (profiles.length) console.log('');
  console.log(
    JSON.stringify({
      bench: 'fanout',
      date: started.toISOString(),
      machine: machine(),
      params: { runs: RUNS, warmupS: WARMUP_S, durationS: DURATION_S, receivers: RECEIVERS, dackMs: DACK_MS, setup: SETUP, pinned: PIN, runtime: RUNTIME },
      steps: steps.map((st) => ({
        scenario: st.s.name,
        convs: st.s.convs,
        members: st.s.receivers + 1,
        nodes: st.s.nodes,
        rate: st.rate,
        keepsUp: keepsUp(st),
        runs: st.runs.map((x) => ({ ok: x.ok, acked: x.acked, deliveries: x.deliveries, deliveredPerS: Math.round(x.deliveredPerS), p50: x.delivery.p50, p99: x.delivery.p99, lastP50: x.last.p50, lastP99: x.last.p99, nodeUsPerDelivery: Number(x.nodeUsPerDelivery.toFixed(3)), nodeCores: Number(x.nodeCores.toFixed(3)), recvUsPerDelivery: Number(x.recvUsPerDelivery.toFixed(3)), framesPerRead: Number(x.framesPerRead.toFixed(2)), otherLoad: Number(x.otherLoad.toFixed(2)), missing: x.missing, duplicates: x.duplicates, retried: x.retried, refused: x.refused, unanswered: x.messages - x.acked - Object.values(x.refused).reduce((p, q) => p + q, 0) })),
      })),
    }),
  );
  if (failed) {
    console.log('FAILED: at least one run did not deliver every acknowledged message exactly once to every receiver (or could not run); see the run lines above.');
    process.exitCode = 1;
  }
  await sleep(10);
}

await main();
