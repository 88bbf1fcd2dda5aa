import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { TicksError } from '../lib/errors.js';
import { configSchema, type Config } from './schema.js';

/**
 * Loads the node configuration: schema defaults, then `config/default.json` (or the file named by
 * TICKS_CONFIG), then TICKS_* environment variables. Validates once, names the key, the value and
 * where it came from in every error, warns about unknown TICKS_* variables, and freezes the result.
 */

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Config file; defaults to TICKS_CONFIG, then ./config/default.json when it exists. */
  file?: string | null;
  warn?: (msg: string) => void;
}

type Leaf = { path: string[]; envName: string; kind: 'number' | 'boolean' | 'array' | 'record' | 'string' };

/** Environment variables that are not configuration keys but are understood. */
const EXTRA_ENV = new Set(['TICKS_CONFIG']);
const EXTRA_PREFIXES = ['TICKS_TEST_'];

export function envName(path: string[]): string {
  return 'TICKS_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema as unknown as { def: { type: string; innerType?: z.ZodType } };
  while (['default', 'prefault', 'optional', 'nullable'].includes(s.def.type) && s.def.innerType) {
    s = s.def.innerType as unknown as typeof s;
  }
  return s as unknown as z.ZodType;
}

/** Every leaf key of the schema with its environment variable name. */
export function configLeaves(schema: z.ZodType = configSchema, path: string[] = []): Leaf[] {
  const base = unwrap(schema) as unknown as { def: { type: string; shape?: Record<string, z.ZodType> } };
  if (base.def.type === 'object' && base.def.shape) {
    return Object.entries(base.def.shape).flatMap(([k, v]) => configLeaves(v, [...path, k]));
  }
  const t = base.def.type;
  const kind: Leaf['kind'] =
    t === 'number' ? 'number' : t === 'boolean' ? 'boolean' : t === 'array' ? 'array' : t === 'record' ? 'record' : 'string';
  return [{ path, envName: envName(path), kind }];
}

function fromEnv(leaf: Leaf, raw: string): unknown {
  switch (leaf.kind) {
    case 'number': {
      const n = Number(raw);
      return raw.trim() === '' || Number.isNaN(n) ? raw : n;
    }
    case 'boolean':
      return raw === 'true' ? true : raw === 'false' ? false : raw;
    case 'array':
      return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'record':
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        return raw;
      }
    case 'string':
      return raw;
  }
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function getPath(obj: unknown, path: PropertyKey[]): unknown {
  let cur = obj;
  for (const key of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

export class ConfigError extends TicksError {
  constructor(message: string) {
    super('config.invalid', message, { retryable: false });
    this.name = 'ConfigError';
  }
}

export function loadConfig(opts: LoadOptions = {}): Readonly<Config> {
  const env = opts.env ?? process.env;
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`${m}\n`));
  let file = opts.file === undefined ? env.TICKS_CONFIG ?? resolve('config/default.json') : opts.file;
  const raw: Record<string, unknown> = {};
  if (file !== null) {
    file = resolve(file);
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (opts.file !== undefined || env.TICKS_CONFIG) throw new ConfigError(`config: cannot read ${file}: ${(err as Error).message}`);
    }
    if (text !== undefined) {
      try {
        Object.assign(raw, JSON.parse(text) as Record<string, unknown>);
      } catch (err) {
        throw new ConfigError(`config: ${file} is not valid JSON: ${(err as Error).message}`);
      }
    }
  }

  const sources = new Map<string, string>();
  const leaves = configLeaves();
  const known = new Set(leaves.map((l) => l.envName));
  for (const leaf of leaves) {
    const value = env[leaf.envName];
    if (value === undefined) continue;
    setPath(raw, leaf.path, fromEnv(leaf, value));
    sources.set(leaf.path.join('.'), leaf.envName);
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith('TICKS_') && !known.has(name) && !EXTRA_ENV.has(name) && !EXTRA_PREFIXES.some((p) => name.startsWith(p))) {
      warn(`config: unknown environment variable ${name} is ignored`);
    }
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.');
      const keys = 'keys' in issue && Array.isArray(issue.keys) ? ` (${issue.keys.join(', ')})` : '';
      const from = sources.get(key) ?? (file ? file : 'defaults');
      const value = getPath(raw, issue.path);
      const shown = value === undefined ? '' : ` = ${JSON.stringify(value)}`;
      return `  ${key || '(root)'}${keys}${shown} (from ${from}): ${issue.message}`;
    });
    throw new ConfigError(`config: invalid configuration\n${lines.join('\n')}`);
  }
  return deepFreeze(parsed.data);
}
