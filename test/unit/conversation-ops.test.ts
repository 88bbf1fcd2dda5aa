/**
 * The pure side of groups (src/actors/conversation-ops.ts): replaying the events after any applied
 * seq onto member rows that already reflect some later events gives the same members as the full
 * replay (what the activation's repair relies on), the "all" minimum tracker, and the event codec.
 */
import fc from 'fast-check';
import t from 'tap';
import { applySys, decodeSys, encodeSys, sysChanges, type MemberState } from '../../src/actors/conversation-ops.js';
import { MinTracker } from '../../src/actors/conversation-receipts.js';
import type { SysEvent } from '../../src/protocol/client-conv-frames.js';

const USERS = ['a', 'b', 'c', 'd', 'e'];
const user = fc.constantFrom(...USERS);
const event: fc.Arbitrary<SysEvent> = fc.oneof(
  fc.record({ op: fc.constant('add' as const), by: user, users: fc.uniqueArray(user, { minLength: 1, maxLength: 3 }), role: fc.constantFrom('member' as const, 'admin' as const) }),
  fc.record({ op: fc.constant('remove' as const), by: user, users: fc.tuple(user).map((x) => x) }),
  fc.record({ op: fc.constant('leave' as const), by: user, users: fc.tuple(user).map((x) => x) }),
  fc.record({ op: fc.constant('role' as const), by: user, users: fc.tuple(user).map((x) => x), role: fc.constantFrom('owner' as const, 'admin' as const, 'member' as const) }),
  fc.record({ op: fc.constant('meta' as const), by: user, name: fc.string({ maxLength: 5 }) }),
);

function replay(events: SysEvent[], from: Map<string, MemberState>, start = 0): Map<string, MemberState> {
  const m = new Map(from);
  events.forEach((e, i) => applySys(m, e, 1000 + start + i, 1 + start + i));
  return m;
}

t.test('replaying the events after the applied seq onto partly applied rows gives the full replay', async (t) => {
  fc.assert(
    fc.property(
      fc.array(event, { maxLength: 25 }),
      fc.nat(),
      fc.array(fc.tuple(user, fc.nat()), { maxLength: 5 }),
      (rest, cut, partial) => {
        const events: SysEvent[] = [{ op: 'create', by: 'a', users: ['b'] }, ...rest];
        const full = replay(events, new Map());
        const j = cut % (events.length + 1);
        const applied = replay(events.slice(0, j), new Map());
        // Rows written for some users of later events (any intermediate state), as a crash leaves them.
        const states: Map<string, MemberState>[] = [];
        for (let k = j; k <= events.length; k++) states.push(replay(events.slice(0, k), new Map()));
        const rows = new Map(applied);
        for (const [u, pick] of partial) {
          const s = states[pick % states.length]!.get(u);
          if (s === undefined) rows.delete(u);
          else rows.set(u, s);
          // Only users the later events touch can be ahead; others keep their applied state.
          const touched = events.slice(j).some((e) => sysChanges(e, 0, 0, () => undefined).has(u));
          if (!touched) {
            const back = applied.get(u);
            if (back === undefined) rows.delete(u);
            else rows.set(u, back);
          }
        }
        const repaired = replay(events.slice(j), rows, j);
        t.same(Object.fromEntries([...repaired].sort()), Object.fromEntries([...full].sort()));
      },
    ),
    { numRuns: 300 },
  );
});

t.test('MinTracker: the minimum over members, raised, added and removed', async (t) => {
  const m = new MinTracker();
  t.equal(m.min(), 0, 'empty');
  m.raise('a', 0);
  m.raise('b', 0);
  m.raise('c', 0);
  m.raise('a', 5);
  m.raise('b', 3);
  t.equal(m.min(), 0);
  m.raise('c', 4);
  t.equal(m.min(), 3);
  m.raise('b', 2);
  t.equal(m.get('b'), 3, 'never lowered');
  m.remove('b');
  t.equal(m.min(), 4, 'removing the lowest member advances the minimum');
  t.same(m.atLeast(5), ['a']);
  t.same(m.atLeast(4), ['a', 'c']);
  m.remove('zzz');
  t.equal(m.size, 2);
});

t.test('events round-trip through their msgpack body; other bodies are not events', async (t) => {
  const e: SysEvent = { op: 'role', by: 'a', users: ['b'], role: 'owner' };
  t.same(decodeSys(encodeSys(e)), e);
  t.equal(decodeSys(new Uint8Array([1, 2, 3])), null);
  t.equal(decodeSys(new TextEncoder().encode('hello')), null);
});
