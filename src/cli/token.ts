import { resolveHs256Secret } from '../auth/dev-secret.js';
import { mintHs256Token } from '../auth/mint.js';
import { settingsOf } from '../auth/verify.js';
import { loadConfig } from '../config/load.js';
import { isTicksError } from '../lib/errors.js';
import { parseArgs, parseDurationS, UsageError, type Command } from './command.js';

const MAX_TTL_S = 365 * 86_400;

/** `ticks token <user> <device> [--ttl 24h]`: mints an HS256 token the configured node accepts. */
export const tokenCommand: Command = {
  name: 'token',
  summary: 'mint an HS256 token for a user and device (development and tests)',
  usage: [
    'usage: ticks token <user> <device> [--ttl 24h]',
    '',
    'Prints a JWT for <user> on <device>, signed with auth.hs256Secret, or with the dev secret in',
    '<dataDir>/dev-secret when auth.devTokens is on (created when missing). Reads the same',
    'configuration as the node: config/default.json (or TICKS_CONFIG) and TICKS_* variables.',
    '',
    '  --ttl <duration>   lifetime: 90s, 15m, 24h, 7d (default 24h, at most auth.maxTokenLifetimeS)',
    '',
    'Connect with:  Authorization: Bearer <token>   or   ws://host:port/ws?v=1&token=<token>',
  ].join('\n'),
  async run(args, io) {
    const { positional, options } = parseArgs(args, ['ttl']);
    if (positional.length !== 2) throw new UsageError('expected <user> and <device>');
    const [user, device] = positional as [string, string];
    const ttl = options.get('ttl');
    const cfg = loadConfig({ env: io.env, warn: io.err });
    // The node refuses tokens that live longer than auth.maxTokenLifetimeS.
    const maxS = Math.min(MAX_TTL_S, cfg.auth.maxTokenLifetimeS);
    const ttlS = typeof ttl === 'string' ? parseDurationS(ttl) : Math.min(24 * 3600, maxS);
    if (ttlS < 1 || ttlS > maxS) throw new UsageError(`--ttl must be between 1s and ${maxS}s (auth.maxTokenLifetimeS)`);

    const secret = resolveHs256Secret(cfg, { create: true });
    if (secret === undefined) {
      io.err(
        'ticks token: no HS256 secret is configured. Set TICKS_AUTH_HS256_SECRET (at least 32 characters, the ' +
          'same value the node uses), or for local development enable auth.devTokens (TICKS_AUTH_DEV_TOKENS=true).',
      );
      return 1;
    }
    if (!cfg.auth.algorithms.includes('HS256')) io.err('ticks token: warning: HS256 is not in auth.algorithms; the node will reject this token');
    try {
      io.out(await mintHs256Token({ secret: secret.secret, user, device, ttlS, settings: settingsOf(cfg.auth) }));
    } catch (err) {
      if (isTicksError(err, 'auth.bad_id')) throw new UsageError(err.message);
      throw err;
    }
    return 0;
  },
};
