import type { z } from 'zod';
import { envName } from './load.js';
import { configSchema } from './schema.js';

/** One documented configuration key: path, environment variable, default and description. */
export interface KeyDoc {
  key: string;
  env: string;
  default: unknown;
  description: string;
}

type Def = { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType>; defaultValue?: unknown };

function defOf(s: z.ZodType): Def {
  return (s as unknown as { def: Def }).def;
}

/** Walks the schema and lists every leaf key with its default and description (for docs/CONFIG.md). */
export function describeConfig(schema: z.ZodType = configSchema, path: string[] = []): KeyDoc[] {
  let s = schema;
  let description = (s as unknown as { description?: string }).description ?? '';
  let dflt: unknown = undefined;
  for (;;) {
    const d = defOf(s);
    if ((d.type === 'default' || d.type === 'prefault') && d.innerType) {
      if (d.type === 'default' && dflt === undefined) dflt = d.defaultValue;
    } else if (!(d.type === 'optional' || d.type === 'nullable') || !d.innerType) {
      break;
    }
    s = d.innerType!;
    description ||= (s as unknown as { description?: string }).description ?? '';
  }
  const d = defOf(s);
  if (d.type === 'object' && d.shape) {
    return Object.entries(d.shape).flatMap(([k, v]) => describeConfig(v, [...path, k]));
  }
  return [{ key: path.join('.'), env: envName(path), default: dflt, description }];
}

/** The markdown table of docs/CONFIG.md. */
export function configMarkdown(): string {
  const rows = describeConfig().map((k) => {
    const dv = k.default === undefined ? 'unset' : `\`${JSON.stringify(k.default)}\``;
    return `| \`${k.key}\` | \`${k.env}\` | ${dv} | ${k.description.replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Configuration',
    '',
    'Generated from `src/config/schema.ts` by `npm run config:doc`; a unit test fails when this file is stale.',
    '',
    'Layers, later wins: schema defaults, `config/default.json` (or the file named by `TICKS_CONFIG`),',
    '`TICKS_*` environment variables (lists comma-separated, maps as JSON). Invalid values stop the node',
    'with a message naming the key, the value and its source; unknown keys are errors, unknown `TICKS_*`',
    'variables are warned about.',
    '',
    '| key | environment | default | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
