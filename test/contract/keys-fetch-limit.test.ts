/**
 * The per-user prekey fetch limit (src/keys/fetch-limit.ts), both implementations: memory (one
 * shard thread, embedded mode) and Redis (cluster-wide, on the real test Redis). Fixed one-minute
 * windows: `perMinute` takes pass, the next is refused with the seconds left in the window, a new
 * window starts afresh, and users do not share a budget. Two Redis limiters (two threads or nodes)
 * share one budget.
 */
import t from 'tap';
import { MemoryFetchLimiter, RedisFetchLimiter, type FetchLimiter } from '../../src/keys/fetch-limit.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

/** 10 s into a minute window (1.8e12 is a whole number of minutes). */
const START = 1_800_000_000_000 + 10_000;
let clock = START;
const now = (): number => clock;

const impls: { name: string; make: () => FetchLimiter[] }[] = [
  { name: 'memory', make: () => [new MemoryFetchLimiter(5, now)] },
  {
    name: 'redis',
    make: () => {
      const url = requireRedisUrl();
      const prefix = uniqueRedisPrefix(`keysfetch${Math.random().toString(36).slice(2, 6)}`);
      return [new RedisFetchLimiter(url, prefix, 5, now), new RedisFetchLimiter(url, prefix, 5, now)];
    },
  },
];

for (const impl of impls) {
  t.test(`${impl.name}: perMinute takes per user per window, then Retry-After until the window ends`, async (t) => {
    clock = START;
    const limiters = impl.make();
    t.teardown(() => Promise.all(limiters.map((l) => l.close())));
    const [l1, l2] = [limiters[0]!, limiters[1] ?? limiters[0]!];
    const verdicts = [];
    // Alternate between the two limiters: with Redis they share the budget.
    for (let i = 0; i < 6; i++) verdicts.push(await (i % 2 === 0 ? l1 : l2).take('u1'));
    t.same(verdicts.slice(0, 5), Array(5).fill({ ok: true }), 'the first 5 pass');
    t.same(verdicts[5], { ok: false, retryAfterS: 50 }, 'the 6th is refused for the 50 s left in the window');
    t.same(await l1.take('u2'), { ok: true }, 'another user has its own budget');
    clock += 49_500;
    t.same(await l2.take('u1'), { ok: false, retryAfterS: 1 }, 'still refused half a second before the window ends');
    clock += 600;
    t.same(await l1.take('u1'), { ok: true }, 'a new window starts afresh');
  });
}

t.test('redis: an unreachable Redis is a retryable error, not a pass', async (t) => {
  const l = new RedisFetchLimiter('redis://127.0.0.1:1', 'ticks:test:nowhere:', 5, now);
  t.teardown(() => l.close());
  await t.rejects(l.take('u1'), { code: 'cluster.unavailable', retryable: true });
});
