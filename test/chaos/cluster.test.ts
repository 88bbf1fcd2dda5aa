/**
 * Chaos, three nodes sharing a private Redis (directory, bus, sessions) and a private Cassandra
 * (short form; `npm run chaos` runs the long one): 9 users x 2 devices spread over the nodes (each
 * client fails over to the next node's URL), 1:1 conversations across nodes, under: kill -9 of a
 * node (left dead: the others take its conversations over when the leases expire), a shard crash,
 * a Redis restart that loses all data while one owner is frozen with SIGSTOP (old and new owners
 * both believe they own conversations: the store's epoch fence must keep the stale writes out; the
 * figures show how many it rejected), Cassandra frozen for 10 s, and a reconnect storm of 45 clients
 * and a kill -9 with three groups of 5 members taking traffic besides the ring. Checked like the single-node runs (test/support/chaos/history-check.ts).
 *
 * Needs the node's cluster configuration (cluster.redisUrl in src/config/schema.ts); a checkout
 * without it skips every run and prints why.
 */
import t from 'tap';
import { assertScenario, chaosFile } from '../support/chaos/tap.js';
import { clusterSuite, clusterUnavailable } from '../support/chaos/suites.js';

const missing = clusterUnavailable();
if (missing !== undefined) {
  t.comment(`3-node chaos runs skipped: ${missing}`);
  for (const spec of clusterSuite(false).scenarios) t.test(spec.name, { skip: `cluster mode unavailable: ${missing}` }, async () => {});
} else {
  await chaosFile(clusterSuite(false), assertScenario);
}
