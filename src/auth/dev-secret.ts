import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { TicksError } from '../lib/errors.js';

/**
 * The HS256 secret of a node: `auth.hs256Secret` when set; otherwise, with `auth.devTokens`, the
 * contents of `<dataDir>/dev-secret`, created on first use (by the node or by `ticks token`,
 * whichever runs first). Creation is exclusive (`wx`), so two processes racing both end up with the
 * one file that won.
 */
export const DEV_SECRET_FILE = 'dev-secret';
const MIN_SECRET_CHARS = 32;

export function devSecretPath(dataDir: string): string {
  return join(dataDir, DEV_SECRET_FILE);
}

function readSecret(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TicksError('auth.dev_secret', `cannot read ${path}: ${(err as Error).message}`, { retryable: false, cause: err });
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_CHARS) {
    throw new TicksError('auth.dev_secret', `${path} holds a secret shorter than ${MIN_SECRET_CHARS} characters; delete it to generate a new one`, { retryable: false });
  }
  return secret;
}

/** Returns the dev secret in `dataDir`, creating it (0600, 256 random bits) when missing. */
export function ensureDevSecret(dataDir: string): { secret: string; path: string; created: boolean } {
  const path = devSecretPath(dataDir);
  const existing = readSecret(path);
  if (existing !== undefined) return { secret: existing, path, created: false };
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  try {
    writeFileSync(path, secret + '\n', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new TicksError('auth.dev_secret', `cannot create ${path}: ${(err as Error).message}`, { retryable: false, cause: err });
    }
    return { secret: readSecret(path)!, path, created: false };
  }
  return { secret, path, created: true };
}

/**
 * The secret HS256 tokens are signed and verified with, or undefined when the node has none (then
 * only public-key tokens are accepted). `create: false` never writes the file.
 */
export function resolveHs256Secret(
  cfg: Pick<Config, 'auth' | 'dataDir'>,
  opts: { create: boolean },
): { secret: string; source: 'config' | 'dev-secret'; path?: string; created?: boolean } | undefined {
  if (cfg.auth.hs256Secret !== undefined) return { secret: cfg.auth.hs256Secret, source: 'config' };
  if (!cfg.auth.devTokens) return undefined;
  if (opts.create) return { ...ensureDevSecret(cfg.dataDir), source: 'dev-secret' };
  const path = devSecretPath(cfg.dataDir);
  const secret = readSecret(path);
  return secret === undefined ? undefined : { secret, source: 'dev-secret', path };
}
