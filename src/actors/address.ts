/**
 * Actor addresses and shard placement. An actor is `kind/key`; within a node it lives on shard
 * `shardOf(key, shardCount)`. The hash must never change between releases: two shards (or two
 * builds during a rolling restart) that disagreed on placement would both activate one conversation.
 */
export type ActorKind = 'conv' | 'user';
export const ACTOR_KINDS: readonly ActorKind[] = ['conv', 'user'];

/** 32-bit FNV-1a over the UTF-8 bytes of `s`. Stable, fast, well spread for short ids. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    // Encode to UTF-8 inline so the result matches hashing the bytes (no Buffer allocation).
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    const bytes =
      c < 0x800
        ? [0xc0 | (c >> 6), 0x80 | (c & 63)]
        : c < 0x10000
          ? [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)]
          : [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  }
  return h >>> 0;
}

/** The shard that owns the actor with this key. */
export function shardOf(key: string, shardCount: number): number {
  return fnv1a32(key) % shardCount;
}
