/** Helpers shared by the cluster contract suites (directory, sessions, channel interest). */
import type { Test } from 'tap';
import { ClusterError } from '../../src/cluster/errors.js';

/** Polls `cond` every 20 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Asserts that `p` rejects with a ClusterError of `code`. */
export async function rejectsWithCode(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: expected ${code}, resolved instead`);
  } catch (err) {
    t.ok(err instanceof ClusterError, `${msg}: is a ClusterError`);
    t.equal((err as ClusterError).code, code, msg);
  }
}
