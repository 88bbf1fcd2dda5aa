/**
 * Summaries of V8 `.cpuprofile` files (written by `node --cpu-prof`, one per thread): self time per
 * function and per source area, so a benchmark can name its hot spots in text.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot {
  name: string;
  selfMs: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  /** Sampled time excluding (idle). */
  busyMs: number;
  totalMs: number;
  /** By self time. */
  functions: HotSpot[];
  /** By inclusive time (the function or anything it called was on the CPU). */
  inclusive: HotSpot[];
  areas: HotSpot[];
}

/** A function's name and file (line numbers of tsx-compiled code do not match the source). */
function fnKey(n: ProfileNode, root: string): string {
  const { functionName, url } = n.callFrame;
  if (url === '') return functionName || '(anonymous)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  const rel = nm >= 0 ? path.slice(nm + 'node_modules/'.length) : path.startsWith('node:') ? path : relative(root, path);
  return `${functionName || '(anonymous)'} ${rel}`;
}

/** Where a function lives, coarsely: src/<folder>, a package name, node internals, or a V8 pseudo-node. */
function areaOf(url: string, fn: string, root: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith('node:')) return 'node:' + path.slice(5).split('/')[0];
  const rel = relative(root, path);
  if (!rel.startsWith('..')) {
    const parts = rel.split('/');
    return parts.length > 2 ? `${parts[0]}/${parts[1]}` : rel;
  }
  return path;
}

/**
 * `window` (optional) keeps only the samples taken in [fromUs, toUs) of the monotonic clock
 * (CLOCK_MONOTONIC µs: V8's profile timestamps and `process.hrtime` share it), e.g. a benchmark's
 * measured window without the start-up and connecting before it.
 */
export function summarizeProfile(file: string, root: string, top = 15, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  // timeDeltas[i] is the time before sample i; attribute it to the sample (V8's own convention).
  let at = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (window && (at < window.fromUs || at >= window.toUs)) continue;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  }
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const fns = new Map<string, number>();
  const incl = new Map<string, number>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const { functionName, url } = n.callFrame;
    total += us;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = fnKey(n, root);
    fns.set(name, (fns.get(name) ?? 0) + us);
    const area = areaOf(url, functionName, root);
    areas.set(area, (areas.get(area) ?? 0) + us);
    // Inclusive: every distinct function on this sample's stack gets the time once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur)!;
      if (node.callFrame.functionName === '(root)') break;
      const key = fnKey(node, root);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>): HotSpot[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: busy > 0 ? us / busy : 0 }));
  return { file, busyMs: busy / 1000, totalMs: total / 1000, functions: rank(fns), inclusive: rank(incl), areas: rank(areas) };
}

export function profilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}
