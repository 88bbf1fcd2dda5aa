/** Reads a node's Prometheus /metrics text into summable series, for deltas over a benchmark window. */

export type Series = Map<string, number>;

/** `name{labels}` -> value, for every sample line. */
export function parseMetrics(text: string): Series {
  const out: Series = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const v = Number(line.slice(sp + 1));
    if (Number.isFinite(v)) out.set(line.slice(0, sp), v);
  }
  return out;
}

export async function scrape(url: string, timeoutMs = 5000): Promise<Series> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return parseMetrics(await res.text());
}

/** Sum of every series of metric `name` whose labels contain each of `labels` (e.g. 'op="append"'). */
export function total(s: Series, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, v] of s) {
    const brace = key.indexOf('{');
    const n = brace < 0 ? key : key.slice(0, brace);
    if (n !== name) continue;
    if (labels.every((l) => key.includes(l))) sum += v;
  }
  return sum;
}

/** total(after) - total(before). */
export function delta(before: Series, after: Series, name: string, ...labels: string[]): number {
  return total(after, name, ...labels) - total(before, name, ...labels);
}
