/**
 * The services `npm test` starts are really there and reachable through test/support/env.ts.
 */
import cassandra from 'cassandra-driver';
import { Redis } from 'ioredis';
import t from 'tap';
import { requireCassandra, requireRedisUrl, uniqueKeyspace, uniqueRedisPrefix } from '../support/env.js';

t.test('Redis answers PING and keeps a value under the run prefix', async (t) => {
  const redis = new Redis(requireRedisUrl(), { maxRetriesPerRequest: 1 });
  t.teardown(() => redis.quit());
  t.equal(await redis.ping(), 'PONG');
  const key = `${uniqueRedisPrefix('services')}probe`;
  await redis.set(key, 'hello', 'EX', 60);
  t.equal(await redis.get(key), 'hello');
  t.match(key, /^ticks:test:[a-z0-9_]+:services:probe$/);
});

t.test('Cassandra 5 answers CQL and accepts a keyspace named for this run', async (t) => {
  const { contactPoints, localDataCenter } = requireCassandra();
  const client = new cassandra.Client({ contactPoints, localDataCenter });
  t.teardown(() => client.shutdown());
  const local = await client.execute('SELECT release_version FROM system.local');
  t.match(String(local.first().get('release_version')), /^5\./);

  const keyspace = uniqueKeyspace('services');
  t.ok(keyspace.length <= 48, 'keyspace name fits Cassandra limit');
  await client.execute(
    `CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
  );
  await client.execute(`CREATE TABLE IF NOT EXISTS ${keyspace}.probe (id int PRIMARY KEY, body text)`);
  await client.execute(`INSERT INTO ${keyspace}.probe (id, body) VALUES (?, ?)`, [1, 'hello'], { prepare: true });
  const row = await client.execute(`SELECT body FROM ${keyspace}.probe WHERE id = ?`, [1], { prepare: true });
  t.equal(row.first().get('body'), 'hello');
});
