/**
 * Counting rate-limited starts the way the job runners limit them: fixed windows, each opened by the
 * first start at or after the end of the previous one (BullMQ's limiter: a counter that expires
 * `durationMs` after its first increment; the memory runner does the same).
 *
 * `slackMs` shortens each window, for start times taken on a client clock (a little before the grant
 * in Redis) or a little after the grant (a promise resolution). In a storm the starts of one window
 * come in a burst at its opening, far from its end, so a slack of tens of ms cannot merge windows.
 */
export function startsPerWindow(times: readonly number[], durationMs: number, slackMs: number): number[] {
  const sorted = [...times].sort((a, b) => a - b);
  const counts: number[] = [];
  let openedAt = -Infinity;
  for (const at of sorted) {
    if (at >= openedAt + durationMs - slackMs) {
      openedAt = at;
      counts.push(0);
    }
    counts[counts.length - 1]!++;
  }
  return counts;
}
