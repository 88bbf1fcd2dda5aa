/**
 * A subcommand of the `ticks` CLI. Commands write their result to `out` (stdout: pipe-friendly) and
 * everything meant for a human to `err`, and return the exit code. A usage mistake is a
 * UsageError: the dispatcher prints it with the command's usage and exits 2.
 */
export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  name: string;
  /** One line for `ticks --help`. */
  summary: string;
  /** Full help for `ticks <name> --help`. */
  usage: string;
  run(args: string[], io: CliIO): Promise<number>;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Splits `--name value` / `--name=value` options from positional arguments. */
export function parseArgs(args: string[], valueOptions: readonly string[], flags: readonly string[] = []): { positional: string[]; options: Map<string, string | true> } {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (flags.includes(name) && eq === -1) options.set(name, true);
    else if (valueOptions.includes(name)) {
      const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
      if (value === undefined || value === '') throw new UsageError(`--${name} needs a value`);
      options.set(name, value);
    } else throw new UsageError(`unknown option --${name}`);
  }
  return { positional, options };
}

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90`, `90s`, `15m`, `24h`, `7d` → seconds. */
export function parseDurationS(text: string): number {
  const m = /^([0-9]{1,9})([smhd]?)$/.exec(text.trim());
  if (m === null) throw new UsageError(`invalid duration ${JSON.stringify(text)}: use a number with s, m, h or d (e.g. 24h)`);
  return Number(m[1]) * UNIT_S[m[2] || 's']!;
}
