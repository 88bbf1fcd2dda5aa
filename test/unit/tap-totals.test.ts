/**
 * The counter behind `npm test`'s closing `N passed, N failed` line, fed with raw TAP in the shape
 * tap 21 prints (shortened from real runs).
 */
import t from 'tap';
import { TapCounter, type TapTotals } from '../support/tap-totals.js';

function count(tap: string, files: string[], chunkSize = 7): TapTotals {
  const counter = new TapCounter();
  // Feed in small pieces: the real stream splits lines anywhere.
  for (let i = 0; i < tap.length; i += chunkSize) counter.feed(tap.slice(i, i + chunkSize));
  return counter.finish(files);
}

const passingFile = `TAP version 14
1..1
# Subtest: test/unit/a.test.ts
    # Subtest: first
        ok 1 - should be equal
        ok 2 - should be equal
        1..2
    ok 1 - first # time=4.4ms

    ok 2 - top-level assert
    1..2
    # time=13.3ms
ok 1 - test/unit/a.test.ts # time=13.3ms

# { total: 3, pass: 3 }
`;

t.test('counts leaf assertions, not subtest summaries or file lines', async (t) => {
  const totals = count(passingFile, ['test/unit/a.test.ts']);
  t.same(totals, { passed: 3, failed: 0, skipped: 0, todo: 0, failures: [] });
});

t.test('a failing assertion counts once, with its YAML ignored', async (t) => {
  const tap = `# Subtest: test/x/fail.test.ts
    # Subtest: outer
        not ok 1 - one is two
          ---
          diff: |
            --- expected
            +++ actual
            -2
            +1
            ok 7 - this is YAML, not a test point
          ...

        ok 2 - should be equal
        ok 3 - skipped one # SKIP
        ok 4 - todo one # TODO
        not ok 5 - known bug # TODO
        1..5
    not ok 1 - outer # time=24.4ms
      ---
      at:
        lineNumber: 2
      ...

    ok 2 - top-level pass
    1..2
not ok 1 - test/x/fail.test.ts # time=39.5ms
  ---
  exitCode: 1
  signal: null
  ...
`;
  const totals = count(tap, ['test/x/fail.test.ts']);
  t.equal(totals.passed, 2);
  t.equal(totals.failed, 1);
  t.equal(totals.skipped, 1);
  t.equal(totals.todo, 2);
  t.same(totals.failures, ['test/x/fail.test.ts: one is two']);
});

t.test('a file that exits non-zero after passing counts as one failure', async (t) => {
  const tap = `# Subtest: test/x/exit.test.ts
    ok 1 - then exit
    1..1
not ok 1 - test/x/exit.test.ts # time=16.2ms
  ---
  exitCode: 3
  signal: null
  ...
`;
  const totals = count(tap, ['test/x/exit.test.ts']);
  t.equal(totals.passed, 1);
  t.equal(totals.failed, 1);
  t.same(totals.failures, ['test/x/exit.test.ts: the file failed (exited with code 3)']);
});

t.test('a file that fails to load and one with no tests both count as failed', async (t) => {
  const tap = `# Subtest: test/x/empty.test.ts
    1..0 # no tests found
ok 1 - test/x/empty.test.ts # SKIP no tests found

# Subtest: test/x/broken.test.ts
    1..0 # no tests found
not ok 2 - test/x/broken.test.ts # time=911.9ms
  ---
  exitCode: 1
  ...
`;
  const totals = count(tap, ['test/x/broken.test.ts', 'test/x/empty.test.ts']);
  t.equal(totals.passed, 0);
  t.equal(totals.failed, 2);
  t.same(totals.failures.sort(), [
    'test/x/broken.test.ts: the file failed (exited with code 1)',
    'test/x/empty.test.ts: no tests found',
  ]);
});

t.test('a crash after an assertion counts the crash once', async (t) => {
  const tap = `# Subtest: test/x/crash.test.ts
    ok 1 - before crash
    not ok 2 - boom at top level
      ---
      tapCaught: unhandledRejection
      ...

    1..2
not ok 1 - test/x/crash.test.ts # time=28.5ms
  ---
  exitCode: 1
  ...
`;
  const totals = count(tap, ['test/x/crash.test.ts']);
  t.equal(totals.passed, 1);
  t.equal(totals.failed, 1);
});

t.test('a timed-out file, the runner timeout line and a file with no result all count', async (t) => {
  const tap = `# Subtest: test/x/slow.test.ts
    # Subtest: hangs
        not ok 1 - timeout!
          ---
          signal: SIGALRM
          ...

        1..1
    not ok 1 - hangs # time=5009.3ms
    1..1
not ok 1 - test/x/slow.test.ts # time=5018.3ms
  ---
  signal: SIGALRM
  ...

not ok 2 - timeout!
  ---
  expired: test/x/slow.test.ts
  ...
`;
  const totals = count(tap, ['test/x/slow.test.ts', 'test/x/never.test.ts']);
  t.equal(totals.failed, 3);
  t.same(totals.failures, [
    'test/x/slow.test.ts: timeout!',
    'tap: timeout!',
    'test/x/never.test.ts: no result (the runner never reported this file)',
  ]);
});

t.test('buffered subtests with braces count their children only', async (t) => {
  const tap = `# Subtest: test/unit/b.test.ts
    ok 1 - parallel one # time=3ms {
        ok 1 - inner a
        ok 2 - inner b
        1..2
    }
    not ok 2 - parallel two # time=2ms {
        not ok 1 - inner c
        1..1
    }
    1..2
not ok 1 - test/unit/b.test.ts
`;
  const totals = count(tap, ['test/unit/b.test.ts']);
  t.equal(totals.passed, 2);
  t.equal(totals.failed, 1);
  t.same(totals.failures, ['test/unit/b.test.ts: inner c']);
});

t.test('Bail out! counts as a failure', async (t) => {
  const totals = count('# Subtest: test/unit/c.test.ts\n    Bail out! database gone\n', ['test/unit/c.test.ts']);
  t.equal(totals.failed, 2);
  t.equal(totals.failures[0], 'test/unit/c.test.ts: Bail out! database gone');
});
