/**
 * `npm run chaos`: the long chaos runs. Same faults as test/chaos/*.test.ts with longer traffic, more
 * clients, and a run per suite that chains every fault. Prints the figures of every run and exits
 * non-zero when any run lost an acked message or broke any other checked property.
 *
 *   npm run chaos                       both suites (cluster only when the node has cluster config)
 *   npm run chaos -- single             one suite
 *   npm run chaos -- single storm       runs whose name contains "storm"
 *   CHAOS_SHORT=1 npm run chaos         the short parameters (what npm test runs)
 *   TICKS_CHAOS_KEEP_LOGS=1             keep the nodes' logs (the folder is printed)
 */
import { testRunId } from '../support/env.js';
import { clusterSuite, clusterUnavailable, runSpec, singleNodeSuite, startChaosServices, type Suite } from '../support/chaos/suites.js';

const long = process.env.CHAOS_SHORT !== '1';
const [which, filter] = process.argv.slice(2);
const suites: Suite[] = [];
if (which === undefined || which === 'single') suites.push(singleNodeSuite(long));
if (which === undefined || which === 'cluster') {
  const missing = clusterUnavailable();
  if (missing === undefined) suites.push(clusterSuite(long));
  else console.log(`cluster suite skipped: ${missing}`);
}

const results: { name: string; ok: boolean; summary: string }[] = [];
for (const suite of suites) {
  const specs = suite.scenarios.filter((s) => filter === undefined || s.name.includes(filter));
  if (specs.length === 0) continue;
  const services = await startChaosServices(suite.mode);
  console.log(`${suite.mode} suite: private Cassandra on ${services.cassandra.contactPoints.join(',')} (started in ${services.cassandra.startMs} ms)${services.redis ? `, private Redis on ${services.redis.url}` : ''}`);
  try {
    for (const spec of specs) {
      const r = await runSpec(suite, spec, services, `chaos_${testRunId()}_${suite.mode}`, (line) => console.log(`  ${line}`));
      console.log(r.summary);
      // A sabotage run passes when the checker caught it.
      const ok = spec.mustFail ? !r.ok && r.check.figures.conflicts > 0 : r.ok;
      results.push({ name: spec.mustFail ? `${r.name} (caught: ${!r.ok})` : r.name, ok, summary: r.summary });
    }
  } finally {
    await services.stop();
  }
}

console.log('\nchaos summary:');
for (const r of results) console.log(`  ${r.ok ? 'ok    ' : 'FAILED'} ${r.name}`);
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
