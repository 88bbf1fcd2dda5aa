/** Printing helpers for benchmark summaries: a Markdown table (pasteable into RESULTS.md) and numbers. */

export function markdownTable(headers: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

/** Integer with thousands separators. */
export const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Microseconds as milliseconds with 2 significant decimals for small values. */
export const ms = (us: number): string => (us >= 100_000 ? (us / 1000).toFixed(0) : us >= 10_000 ? (us / 1000).toFixed(1) : (us / 1000).toFixed(2));

export const pct = (f: number): string => `${(f * 100).toFixed(0)}%`;

export const kb = (bytes: number): string => (bytes / 1024).toFixed(2);
