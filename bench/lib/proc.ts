/**
 * Linux /proc readings for benchmarks: a process's CPU time (all its threads) and resident memory,
 * per-CPU busy time, kernel socket memory, slab, sysctls, and TIME_WAIT sockets per local address.
 * Reads only; `setSysctl` is the one writer and says what it changed.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

let clkTck: number | undefined;
/** Kernel clock ticks per second (USER_HZ), the unit of /proc/<pid>/stat times. */
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(out.stdout.trim());
    clkTck = out.status === 0 && n > 0 ? n : 100;
  }
  return clkTck;
}

/** User and system CPU time of a whole process (every thread), in µs; null when it is gone. */
export function processCpu(pid: number): { userUs: number; systemUs: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: split after its closing paren.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return { userUs: (Number(rest[11]) * 1e6) / ticksPerSecond(), systemUs: (Number(rest[12]) * 1e6) / ticksPerSecond() };
}

/** User + system CPU time of a whole process (every thread), in µs; null when it is gone. */
export function processCpuUs(pid: number): number | null {
  const c = processCpu(pid);
  return c === null ? null : c.userUs + c.systemUs;
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM, RssAnon, ...); null when absent. */
export function statusBytes(pid: number, field: string): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

export function rssBytes(pid: number): number | null {
  return statusBytes(pid, 'VmRSS');
}

/** Busy and total jiffies of one CPU from /proc/stat (busy = everything but idle and iowait). */
export function cpuJiffies(cpu: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (line === undefined) return { busy: 0, total: 0 };
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** Jiffies (USER_HZ ticks, the unit of /proc/stat) as µs. */
export function jiffiesToUs(j: number): number {
  return (j * 1e6) / ticksPerSecond();
}

/** Fraction of time CPU `cpu` was busy between two readings. */
export function busyFraction(a: { busy: number; total: number }, b: { busy: number; total: number }): number {
  const dt = b.total - a.total;
  return dt > 0 ? (b.busy - a.busy) / dt : 0;
}

export interface SockStat {
  /** TCP sockets in use (each loopback connection is two: client and server side). */
  tcpInuse: number;
  tcpTimeWait: number;
  /** TCP buffer memory in pages (the kernel's tcp_mem accounting). */
  tcpMemPages: number;
}

export function sockstat(): SockStat {
  const text = readFileSync('/proc/net/sockstat', 'utf8');
  const m = /^TCP: inuse (\d+) orphan \d+ tw (\d+) alloc \d+ mem (\d+)/m.exec(text);
  return { tcpInuse: Number(m?.[1] ?? 0), tcpTimeWait: Number(m?.[2] ?? 0), tcpMemPages: Number(m?.[3] ?? 0) };
}

/** A /proc/meminfo field in bytes (Slab, SUnreclaim, MemAvailable, ...). */
export function meminfoBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export function readSysctl(name: string): string {
  return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim().replace(/\s+/g, ' ');
}

/** Writes a sysctl and prints the change; returns false (and says so) when it cannot be written. */
export function setSysctl(name: string, value: string, log: (line: string) => void): boolean {
  const before = readSysctl(name);
  if (before === value) return true;
  try {
    writeFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, value);
  } catch (err) {
    log(`sysctl ${name}: cannot set ${JSON.stringify(value)} (still ${JSON.stringify(before)}): ${(err as Error).message}`);
    return false;
  }
  log(`sysctl ${name}: ${JSON.stringify(before)} -> ${JSON.stringify(readSysctl(name))}`);
  return true;
}

/**
 * TIME_WAIT sockets per IPv4 address, counting both ends (from /proc/net/tcp). A connection
 * benchmark re-run at once from the same source address stalls on them (bind() with an explicit
 * address does not reuse TIME_WAIT ports, and the server keeps TIME_WAIT for the 4-tuples it closed),
 * so generators pick addresses that have few.
 */
export function timeWaitByAddress(): Map<string, number> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== '06') continue;
    for (const end of [f[1]!, f[2]!]) {
      const hex = end.split(':')[0]!;
      // Little-endian hex of the IPv4 address.
      const ip = [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
      out.set(ip, (out.get(ip) ?? 0) + 1);
    }
  }
  return out;
}

/**
 * `count` loopback source addresses 127.0.0.N (N from `first`), skipping any with more than
 * `maxTimeWait` TIME_WAIT sockets left by an earlier run.
 */
export function pickSourceAddresses(count: number, first = 2, maxTimeWait = 200): string[] {
  const tw = timeWaitByAddress();
  const out: string[] = [];
  for (let n = first; out.length < count && n < 255; n++) {
    const ip = `127.0.0.${n}`;
    if ((tw.get(ip) ?? 0) <= maxTimeWait) out.push(ip);
  }
  if (out.length < count) throw new Error(`only ${out.length} loopback source addresses without TIME_WAIT sockets; wait a minute and re-run`);
  return out;
}
