import type { Activation, Directory, DirectoryLease, DirectoryOwner, RegisterResult } from './directory.js';
import { ClusterError } from '../errors.js';
import { instrument } from './metrics.js';
import { checkActivation, checkAddress, checkLeaseMs, nextEpoch } from './validate.js';

export interface MemoryDirectoryOptions {
  leaseMs: number;
  /** Wall-clock ms; injectable so unit tests drive lease expiry without sleeping. */
  now?: () => number;
}

interface Entry {
  node: string;
  activationId: string;
  epoch: number;
  expiresAtMs: number;
}

/**
 * The directory of a single-node deployment (and of unit tests): the same contract as the Redis
 * directory, in one process. Expired entries are dropped when touched rather than by a timer, so an
 * idle directory costs nothing; like Redis's counters, the epoch map keeps one number per address
 * ever registered in this process.
 */
export class MemoryDirectory implements Directory {
  readonly impl = 'memory';
  readonly leaseMs: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  private readonly epochs = new Map<string, number>();

  constructor(opts: MemoryDirectoryOptions) {
    checkLeaseMs(opts.leaseMs);
    this.leaseMs = opts.leaseMs;
    this.now = opts.now ?? Date.now;
  }

  register(address: string, activation: Activation): Promise<RegisterResult> {
    return this.op('register', () => {
      checkAddress(address);
      checkActivation(activation);
      const now = this.now();
      const live = this.live(address, now);
      if (live !== undefined && !owns(live, activation)) return { won: false, owner: toOwner(live) };
      if (live !== undefined) {
        live.expiresAtMs = now + this.leaseMs;
        return { won: true, owner: toOwner(live) };
      }
      const epoch = nextEpoch(this.epochs.get(address) ?? 0, now);
      this.epochs.set(address, epoch);
      const entry: Entry = { ...pick(activation), epoch, expiresAtMs: now + this.leaseMs };
      this.entries.set(address, entry);
      return { won: true, owner: toOwner(entry) };
    });
  }

  renew(address: string, activation: Activation): Promise<boolean> {
    return this.op('renew', () => {
      checkAddress(address);
      checkActivation(activation);
      return this.renewOne(address, activation, this.now());
    });
  }

  renewMany(leases: readonly DirectoryLease[]): Promise<boolean[]> {
    return this.op('renew_many', () => {
      for (const l of leases) {
        checkAddress(l.address);
        checkActivation(l.activation);
      }
      const now = this.now();
      return leases.map((l) => this.renewOne(l.address, l.activation, now));
    });
  }

  unregister(address: string, activation: Activation): Promise<boolean> {
    return this.op('unregister', () => {
      checkAddress(address);
      checkActivation(activation);
      const live = this.live(address, this.now());
      if (live === undefined || !owns(live, activation)) return false;
      this.entries.delete(address);
      return true;
    });
  }

  lookup(address: string): Promise<DirectoryOwner | null> {
    return this.op('lookup', () => {
      checkAddress(address);
      const live = this.live(address, this.now());
      return live === undefined ? null : toOwner(live);
    });
  }

  private renewOne(address: string, activation: Activation, now: number): boolean {
    const live = this.live(address, now);
    if (live === undefined || !owns(live, activation)) return false;
    live.expiresAtMs = now + this.leaseMs;
    return true;
  }

  /** The entry if its lease has not run out; an expired one is deleted on the way. */
  private live(address: string, now: number): Entry | undefined {
    const e = this.entries.get(address);
    if (e === undefined) return undefined;
    if (e.expiresAtMs > now) return e;
    this.entries.delete(address);
    return undefined;
  }

  private op<T>(op: Parameters<typeof instrument>[1], fn: () => T): Promise<T> {
    return instrument('memory', op, internal, async () => fn());
  }
}

function owns(e: Entry, a: Activation): boolean {
  return e.node === a.node && e.activationId === a.activationId;
}

function pick(a: Activation): Activation {
  return { node: a.node, activationId: a.activationId };
}

function toOwner(e: Entry): DirectoryOwner {
  return { node: e.node, activationId: e.activationId, epoch: e.epoch, leaseExpiresAtMs: e.expiresAtMs };
}

function internal(err: unknown): ClusterError {
  return new ClusterError('cluster.internal', `memory directory: ${String(err)}`, err);
}
