/**
 * Heap snapshot summaries: self size and object count per constructor (or V8 node type), so two
 * snapshots can be diffed to see what a workload added to the heap.
 */
import { readFileSync } from 'node:fs';

export type HeapCensus = Map<string, { count: number; bytes: number }>;

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export function heapCensus(file: string): HeapCensus {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  // Owner of each backing store (an object's out-of-line properties or elements): the node with an
  // edge to it, so "(object properties)" can be told apart by the kind of object that holds them.
  const edgeWidth = s.snapshot.meta.edge_fields.length;
  const toAt = s.snapshot.meta.edge_fields.indexOf('to_node');
  const edgeCountAt = fields.indexOf('edge_count');
  const owner = new Map<number, number>();
  for (let i = 0, e = 0; i < s.nodes.length; i += width) {
    const count = s.nodes[i + edgeCountAt]!;
    if (types[s.nodes[i + typeAt]!] !== 'array') {
      for (let k = 0; k < count; k++) {
        const to = s.edges[(e + k) * edgeWidth + toAt]!;
        if (types[s.nodes[to + typeAt]!] === 'array' && !owner.has(to)) owner.set(to, i);
      }
    }
    e += count;
  }
  const out: HeapCensus = new Map();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + typeAt]!]!;
    // Objects by constructor name, arrays and closures by their name too (V8 names backing stores,
    // e.g. "(object elements)", and closures by function); strings, numbers and code by type only.
    const named = type === 'object' || type === 'native' || type === 'array' || type === 'closure';
    let key = named ? `${s.strings[s.nodes[i + nameAt]!]} (${type})` : `(${type})`;
    const o = type === 'array' ? owner.get(i) : undefined;
    if (o !== undefined) key += ` of ${s.strings[s.nodes[o + nameAt]!]} (${types[s.nodes[o + typeAt]!]})`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += s.nodes[i + sizeAt]!;
    out.set(key, e);
  }
  return out;
}

/** after - before per key, largest byte growth first. */
export function censusDiff(before: HeapCensus, after: HeapCensus): { key: string; count: number; bytes: number }[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  return [...keys]
    .map((key) => ({
      key,
      count: (after.get(key)?.count ?? 0) - (before.get(key)?.count ?? 0),
      bytes: (after.get(key)?.bytes ?? 0) - (before.get(key)?.bytes ?? 0),
    }))
    .sort((a, b) => b.bytes - a.bytes);
}
