/**
 * How test files find the services and names of the current run. `npm test` (test/run.ts) starts
 * Redis and Cassandra and passes them in through these variables; a developer can point a single
 * test file at their own servers by setting the same variables by hand.
 *
 *   TICKS_TEST_REDIS_URL                 redis://127.0.0.1:6379
 *   TICKS_TEST_CASSANDRA_CONTACT_POINTS  127.0.0.1:9042[,host:port...]
 *   TICKS_TEST_CASSANDRA_DC              local data centre, default datacenter1
 *   TICKS_TEST_RUN_ID                    short [a-z0-9] id shared by every file of one run
 *
 * A test that needs a service it cannot reach fails with a message naming the service and how to
 * get it; it never passes silently.
 */
import { randomBytes } from 'node:crypto';

/** Set by test/run.ts when it tried to start a service and could not, so tests can say why. */
export const REDIS_UNAVAILABLE_VAR = 'TICKS_TEST_REDIS_UNAVAILABLE';
export const CASSANDRA_UNAVAILABLE_VAR = 'TICKS_TEST_CASSANDRA_UNAVAILABLE';

function missing(service: string, variable: string, example: string, unavailableVar: string): Error {
  const reason = process.env[unavailableVar];
  if (reason) {
    return new Error(`${service} is unavailable: npm test could not start it (${reason}).`);
  }
  return new Error(
    `${service} is not configured: run the suite with \`npm test\` (it starts ${service} itself), ` +
      `or set ${variable} (for example ${variable}=${example}) to use a running server.`,
  );
}

export function requireRedisUrl(): string {
  const url = process.env.TICKS_TEST_REDIS_URL;
  if (!url) throw missing('Redis', 'TICKS_TEST_REDIS_URL', 'redis://127.0.0.1:6379', REDIS_UNAVAILABLE_VAR);
  return url;
}

export function requireCassandra(): { contactPoints: string[]; localDataCenter: string } {
  const raw = process.env.TICKS_TEST_CASSANDRA_CONTACT_POINTS;
  const contactPoints = (raw ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (contactPoints.length === 0) {
    throw missing(
      'Cassandra',
      'TICKS_TEST_CASSANDRA_CONTACT_POINTS',
      '127.0.0.1:9042',
      CASSANDRA_UNAVAILABLE_VAR,
    );
  }
  return { contactPoints, localDataCenter: process.env.TICKS_TEST_CASSANDRA_DC || 'datacenter1' };
}

let generatedRunId: string | undefined;

/** A short id for this run; lower-case letters and digits only, so it fits keyspace names. */
export function newRunId(): string {
  return randomBytes(5).toString('hex');
}

export function testRunId(): string {
  const fromEnv = process.env.TICKS_TEST_RUN_ID;
  if (fromEnv) return sanitize(fromEnv);
  generatedRunId ??= newRunId();
  return generatedRunId;
}

const MAX_KEYSPACE_LENGTH = 48;

function sanitize(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/**
 * `ticks_test_<runid>_<suffix>`: unique per run and per test file, so files can run in parallel
 * against one Cassandra. Cassandra allows [a-zA-Z0-9_] up to 48 characters (and folds unquoted
 * names to lower case), so the name is sanitised and a suffix that would not fit is an error
 * rather than a silent truncation that could make two files share a keyspace.
 */
export function uniqueKeyspace(suffix: string): string {
  const name = `ticks_test_${testRunId()}_${sanitize(suffix)}`;
  if (name.length > MAX_KEYSPACE_LENGTH) {
    throw new Error(
      `keyspace name ${name} is ${name.length} characters; Cassandra allows ${MAX_KEYSPACE_LENGTH}: use a shorter suffix than '${suffix}'`,
    );
  }
  return name;
}

/** `ticks:test:<runid>:<suffix>:`: every key a test writes starts with this, so runs never collide. */
export function uniqueRedisPrefix(suffix: string): string {
  return `ticks:test:${testRunId()}:${suffix}:`;
}
