import type { Redis } from 'ioredis';
import type { Activation, Directory, DirectoryLease, DirectoryOwner, RegisterResult } from './directory.js';
import { ClusterError } from '../errors.js';
import { countRedisError, RedisScript, runScriptMany, wrapRedisError } from '../redis-client.js';
import { instrument, type DirectoryOp } from './metrics.js';
import { checkActivation, checkAddress, checkLeaseMs } from './validate.js';

export interface RedisDirectoryOptions {
  /** A connection from createRedis; its keyPrefix namespaces every key. Not closed by the directory. */
  redis: Redis;
  leaseMs: number;
}

const lua = (name: string) => new RedisScript(`directory.${name}`, new URL(`./lua/${name}.lua`, import.meta.url));
const REGISTER = lua('register');
const RENEW = lua('renew');
const UNREGISTER = lua('unregister');
const LOOKUP = lua('lookup');

/**
 * The directory on one Redis primary. Keys per address, under the connection's prefix:
 *
 *   dir:{<address>}:owner   hash node, activation, epoch; PEXPIRE = the lease
 *   dir:{<address>}:epoch   the last epoch issued; never expires, never deleted (one small key per
 *                           address ever registered: the price of epochs that survive expiry)
 *
 * Every operation is one Lua script over one address (see lua/*.lua for KEYS and ARGV); the two
 * keys of an address share a hash tag, so the layout also works on Redis Cluster. Lease time is
 * Redis server time (PEXPIRE, TIME), so node clock skew does not matter. Redis replication is
 * asynchronous: a failover can lose a registration or an epoch counter, which is why the store
 * fences writes by epoch (see Directory).
 */
export class RedisDirectory implements Directory {
  readonly impl = 'redis';
  readonly leaseMs: number;
  private readonly redis: Redis;

  constructor(opts: RedisDirectoryOptions) {
    checkLeaseMs(opts.leaseMs);
    this.redis = opts.redis;
    this.leaseMs = opts.leaseMs;
  }

  /** Loads every script now (SCRIPT LOAD), so a node fails at start rather than on first use. */
  async loadScripts(): Promise<void> {
    await this.op('lookup', async () => {
      for (const s of [REGISTER, RENEW, UNREGISTER, LOOKUP]) await s.load(this.redis);
    });
  }

  register(address: string, activation: Activation): Promise<RegisterResult> {
    return this.op('register', async () => {
      checkAddress(address);
      checkActivation(activation);
      const reply = await REGISTER.run(this.redis, keysOf(address), [
        activation.node,
        activation.activationId,
        this.leaseMs,
      ]);
      const r = strings(reply, 5, 'register');
      return { won: r[0] === '1', owner: owner(r.slice(1)) };
    });
  }

  renew(address: string, activation: Activation): Promise<boolean> {
    return this.op('renew', async () => {
      checkAddress(address);
      checkActivation(activation);
      const reply = await RENEW.run(this.redis, [ownerKey(address)], renewArgs(activation, this.leaseMs));
      return reply === 1;
    });
  }

  renewMany(leases: readonly DirectoryLease[]): Promise<boolean[]> {
    return this.op('renew_many', async () => {
      for (const l of leases) {
        checkAddress(l.address);
        checkActivation(l.activation);
      }
      if (leases.length === 0) return [];
      const calls = leases.map((l) => ({
        keys: [ownerKey(l.address)],
        args: renewArgs(l.activation, this.leaseMs),
      }));
      const replies = await runScriptMany(RENEW, this.redis, calls);
      return replies.map((r) => r === 1);
    });
  }

  unregister(address: string, activation: Activation): Promise<boolean> {
    return this.op('unregister', async () => {
      checkAddress(address);
      checkActivation(activation);
      const reply = await UNREGISTER.run(this.redis, [ownerKey(address)], [activation.node, activation.activationId]);
      return reply === 1;
    });
  }

  lookup(address: string): Promise<DirectoryOwner | null> {
    return this.op('lookup', async () => {
      checkAddress(address);
      const reply = await LOOKUP.run(this.redis, [ownerKey(address)], []);
      if (Array.isArray(reply) && reply.length === 0) return null;
      return owner(strings(reply, 4, 'lookup'));
    });
  }

  private op<T>(op: DirectoryOp, fn: () => Promise<T>): Promise<T> {
    return instrument('redis', op, wrap, fn);
  }
}

function wrap(err: unknown): ClusterError {
  const e = wrapRedisError(err);
  countRedisError('directory', e);
  return e;
}

function ownerKey(address: string): string {
  return `dir:{${address}}:owner`;
}

function keysOf(address: string): string[] {
  return [ownerKey(address), `dir:{${address}}:epoch`];
}

function renewArgs(a: Activation, leaseMs: number): (string | number)[] {
  return [a.node, a.activationId, leaseMs];
}

/** Checks a script's reply shape: an array of exactly `n` strings. */
function strings(reply: unknown, n: number, what: string): string[] {
  if (!Array.isArray(reply) || reply.length !== n || !reply.every((x) => typeof x === 'string')) {
    throw new ClusterError('cluster.internal', `directory ${what}: unexpected reply ${JSON.stringify(reply)}`);
  }
  return reply as string[];
}

function owner([node, activationId, epoch, expires]: string[]): DirectoryOwner {
  return { node: node!, activationId: activationId!, epoch: Number(epoch), leaseExpiresAtMs: Number(expires) };
}
