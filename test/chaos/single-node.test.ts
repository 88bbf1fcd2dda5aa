/**
 * Chaos, one node on Cassandra (short form; `npm run chaos` runs the long one): a real node process
 * (test/support/chaos/node-entry.ts, 2 shard threads) on a private Cassandra, users with 2 devices
 * each in 1:1 conversations sending at a steady rate through the SDK, under each fault: kill -9 of
 * the node (restarted on the same port), a shard thread crash, Cassandra frozen with SIGSTOP for
 * 10 s, and a reconnect storm of 45 clients. Every run records every send, ack, delivery and receipt
 * and checks them (test/support/chaos/history-check.ts); its figures are printed as TAP comments.
 *
 * The last run is sabotage: the node is restarted on an empty keyspace, so it forgets every acked
 * message. The checker must fail that run (conflicting seqs, lost messages), which shows that the
 * recording is not blind.
 */
import { assertScenario, chaosFile } from '../support/chaos/tap.js';
import { singleNodeSuite } from '../support/chaos/suites.js';

await chaosFile(singleNodeSuite(false), assertScenario);
