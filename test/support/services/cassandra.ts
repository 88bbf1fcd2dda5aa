/**
 * A throw-away single-node Apache Cassandra 5 for one test run, started straight from the
 * cassandra-all jars on Maven Central (no tarball), with the start-up speed-ups measured in
 * shared/CASSANDRA.md. Production runs ScyllaDB; the tests run the same CQL against this.
 *
 * Cache (git-ignored, `.cache/cassandra/` in the repo):
 *   lib/        the 100 runtime jars, plus `.complete` once the fetch finished
 *   m2/         Maven's local repository
 *   cds/        the AppCDS archive, named by a hash of the JVM, flags and classpath
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import cassandra from 'cassandra-driver';
import { aptInstall, commandExists, exitPromise, freePorts, isRunning, spawnTied, stopServer } from './process.js';

export const CASSANDRA_VERSION = '5.0.9';
const LOCAL_DC = 'datacenter1';
const READY_TIMEOUT_MS = 180_000;
const STOP_GRACE_MS = 20_000;
const START_ATTEMPTS = 2;

export interface CassandraService {
  contactPoints: string[];
  localDataCenter: string;
  pid: number;
  /** From launching java to the first successful CQL query. */
  startMs: number;
  stop(): Promise<void>;
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cacheDir = join(repoRoot, '.cache', 'cassandra');
const libDir = join(cacheDir, 'lib');
const libMarker = join(libDir, '.complete');
const cdsDir = join(cacheDir, 'cds');

/**
 * JVM flags. The module flags are the JPMS section of Cassandra 5.0's conf/jvm17-server.options
 * (three of them, sun.nio.ch, jdk.internal.ref and java.io, are strictly required: without any
 * one the daemon dies at start). Its G1 tuning is left out on purpose: it targets production heaps
 * (16 MB regions would leave a 256 MB heap with 16 regions).
 */
const JPMS_FLAGS = [
  '-Djdk.attach.allowAttachSelf=true',
  '--add-exports', 'java.base/jdk.internal.misc=ALL-UNNAMED',
  '--add-exports', 'java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED',
  '--add-exports', 'java.rmi/sun.rmi.registry=ALL-UNNAMED',
  '--add-exports', 'java.rmi/sun.rmi.server=ALL-UNNAMED',
  '--add-exports', 'java.sql/java.sql=ALL-UNNAMED',
  '--add-exports', 'java.base/java.lang.ref=ALL-UNNAMED',
  '--add-exports', 'jdk.unsupported/sun.misc=ALL-UNNAMED',
  '--add-exports', 'jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED',
  '--add-exports', 'jdk.attach/sun.tools.attach=ALL-UNNAMED',
  '--add-opens', 'java.base/java.lang.module=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.loader=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.ref=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.reflect=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.math=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.module=ALL-UNNAMED',
  '--add-opens', 'java.base/jdk.internal.util.jar=ALL-UNNAMED',
  '--add-opens', 'jdk.management/com.sun.management.internal=ALL-UNNAMED',
  '--add-opens', 'java.base/sun.nio.ch=ALL-UNNAMED',
  '--add-opens', 'java.base/java.io=ALL-UNNAMED',
  '--add-opens', 'java.base/java.lang.reflect=ALL-UNNAMED',
  '--add-opens', 'jdk.compiler/com.sun.tools.javac=ALL-UNNAMED',
  '--add-opens', 'java.base/java.lang=ALL-UNNAMED',
  '--add-opens', 'java.base/java.util=ALL-UNNAMED',
  // Netty options from the same file.
  '-Dio.netty.tryReflectionSetAccessible=true',
  '-Dio.netty.allocator.useCacheForAllThreads=true',
  '-Dio.netty.allocator.maxOrder=11',
];

/** Test-only speed-ups, each measured in CASSANDRA.md (median start 1.6 s instead of 4.7 s). */
const FAST_FLAGS = [
  '-Xss256k',
  '-XX:+UseG1GC',
  '-Xms256m',
  // 2 GiB: a full `npm test` creates a keyspace per suite on one server, and 1 GiB ran out once
  // about 50 keyspaces existed. TICKS_TEST_CASSANDRA_HEAP overrides it (e.g. 4G for a shared server).
  `-Xmx${process.env.TICKS_TEST_CASSANDRA_HEAP ?? '2G'}`,
  '-XX:+ExitOnOutOfMemoryError',
  '-Djava.net.preferIPv4Stack=true',
  // C1 only: on 2 cores C2 compilations never pay back within a test run.
  '-XX:TieredStopAtLevel=1',
  // Removes a 1.4 s pause at start.
  '-Dcassandra.memtable_row_overhead_computation_step=100',
  // No fsync: the data is thrown away after the run.
  '-Dcassandra.skip_sync=true',
  // Fast DDL (CREATE TABLE 90 ms -> 12 ms). Schema created since the last flush is lost on kill -9,
  // so a test that crashes Cassandra itself needs its own instance without these two.
  '-Dcassandra.unsafesystem=true',
  '-Dcassandra.test.flush_local_schema_changes=false',
  // SIGTERM stop in 2.5 s instead of 5.7 s.
  '-Dcassandra.shutdown_announce_in_ms=0',
];

/** Optional deviations from the test settings, for benchmarks (bench/store scylla-cost). */
export interface CassandraStartOptions {
  /** Lines appended to the generated cassandra.yaml, e.g. `paxos_variant: v2`. */
  extraYaml?: string;
  /** Keep C2 (drop -XX:TieredStopAtLevel=1): slower start, faster steady state. */
  fullJit?: boolean;
}

export async function startCassandra(options: CassandraStartOptions = {}): Promise<CassandraService> {
  const java = ensureJava();
  const classpath = ensureJars();
  const javaVersion = spawnSync(java, ['-version'], { encoding: 'utf8' }).stderr;
  let lastError: unknown;
  // Free ports are picked before java binds them; on a clash try once more with fresh ones.
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(java, javaVersion, classpath, options);
    } catch (err) {
      lastError = err;
      if (!(err instanceof Error && /address already in use|BindException/i.test(err.message))) break;
    }
  }
  throw lastError;
}

function javaMajor(javaBin: string): number | undefined {
  const out = spawnSync(javaBin, ['-version'], { encoding: 'utf8' });
  if (out.status !== 0) return undefined;
  const match = /version "(\d+)/.exec(out.stderr);
  return match ? Number(match[1]) : undefined;
}

/** Cassandra 5.0 runs on Java 11 or 17; the flags and timings here were measured on 17. */
function ensureJava(): string {
  if (commandExists('java') && javaMajor('java') === 17) return 'java';
  const find = (): string | undefined => {
    const jvmRoot = '/usr/lib/jvm';
    if (!existsSync(jvmRoot)) return undefined;
    const dir = readdirSync(jvmRoot).find((d) => /^java-17-openjdk/.test(d) && existsSync(join(jvmRoot, d, 'bin', 'java')));
    return dir === undefined ? undefined : join(jvmRoot, dir, 'bin', 'java');
  };
  let java = find();
  if (java === undefined) {
    aptInstall(['openjdk-17-jre-headless'], 'Java 17 is missing (Cassandra needs it)');
    java = find();
  }
  if (java === undefined) throw new Error('Cassandra needs Java 17, and none was found after installing it');
  return java;
}

/**
 * The classpath, in a fixed (sorted) order: the CDS archive is only valid for the exact classpath
 * it was written with, and a `lib/*` wildcard expands in directory order, which nothing promises.
 */
function ensureJars(): string {
  if (!libComplete()) fetchJars();
  const jars = readdirSync(libDir)
    .filter((f) => f.endsWith('.jar'))
    .sort();
  return jars.map((j) => join(libDir, j)).join(':');
}

function libComplete(): boolean {
  if (!existsSync(libMarker)) return false;
  try {
    const marker = JSON.parse(readFileSync(libMarker, 'utf8')) as { version?: string; jars?: string[] };
    return (
      marker.version === CASSANDRA_VERSION &&
      Array.isArray(marker.jars) &&
      marker.jars.length > 0 &&
      marker.jars.every((j) => existsSync(join(libDir, j)))
    );
  } catch {
    return false;
  }
}

function fetchJars(): void {
  if (!commandExists('mvn')) aptInstall(['maven'], 'Maven is missing (it fetches the Cassandra jars)');
  mkdirSync(cacheDir, { recursive: true });
  const pom = join(cacheDir, 'pom.xml');
  writeFileSync(
    pom,
    `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ticks.test</groupId>
  <artifactId>cassandra-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>${CASSANDRA_VERSION}</version>
    </dependency>
  </dependencies>
</project>
`,
  );
  // Copy into a fresh folder and rename it into place, so an interrupted fetch never leaves a
  // half-filled lib/ that looks usable.
  const staging = join(cacheDir, `lib.partial-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  console.log(`[cassandra] fetching cassandra-all ${CASSANDRA_VERSION} and its runtime dependencies into ${libDir}`);
  const started = Date.now();
  const mvn = spawnSync(
    'mvn',
    [
      '-q',
      '-B',
      '-f',
      pom,
      `-Dmaven.repo.local=${join(cacheDir, 'm2')}`,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${staging}`,
      '-DincludeScope=runtime',
    ],
    // Maven's output is noise (and colour codes even with -B) unless it fails.
    { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' },
  );
  if (mvn.status !== 0) {
    console.error(mvn.stdout, mvn.stderr);
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`Cassandra jars: mvn dependency:copy-dependencies failed (exit ${mvn.status})`);
  }
  const jars = readdirSync(staging).filter((f) => f.endsWith('.jar'));
  if (!jars.includes(`cassandra-all-${CASSANDRA_VERSION}.jar`)) {
    throw new Error(`Cassandra jars: cassandra-all-${CASSANDRA_VERSION}.jar is missing after the fetch`);
  }
  writeFileSync(join(staging, '.complete'), JSON.stringify({ version: CASSANDRA_VERSION, jars: jars.sort() }) + '\n');
  rmSync(libDir, { recursive: true, force: true });
  renameSync(staging, libDir);
  console.log(`[cassandra] fetched ${jars.length} jars in ${Date.now() - started} ms`);
}

/**
 * The archive is valid only for the JVM build, flags and classpath that wrote it (a mismatch makes
 * the JVM skip it with a warning), so its name is a hash of all three. Jar sizes and times are in
 * the hash too, in case a jar was replaced under the same name.
 */
function cdsArchivePath(javaVersion: string, flags: string[], classpath: string): string {
  const hash = createHash('sha256');
  hash.update(javaVersion);
  hash.update(flags.join('\n'));
  for (const jar of classpath.split(':')) {
    const st = statSync(jar);
    hash.update(`${jar}:${st.size}:${st.mtimeMs}\n`);
  }
  return join(cdsDir, `cassandra-${CASSANDRA_VERSION}-${hash.digest('hex').slice(0, 16)}.jsa`);
}

function yaml(storagePort: number, nativePort: number): string {
  return `# Generated by test/support/services/cassandra.ts for one test run.
cluster_name: ticks-test
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:${storagePort}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: ${storagePort}
native_transport_port: ${nativePort}
num_tokens: 1
initial_token: 0
auto_snapshot: false
hinted_handoff_enabled: false
concurrent_compactors: 1
`;
}

function logbackXml(logFile: string): string {
  return `<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${logFile}</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
`;
}

async function startOnce(java: string, javaVersion: string, classpath: string, options: CassandraStartOptions = {}): Promise<CassandraService> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-cassandra-'));
  const logDir = join(dir, 'logs');
  mkdirSync(logDir);
  const systemLog = join(logDir, 'system.log');
  const outputLog = join(logDir, 'output.log');
  const [storagePort, nativePort] = (await freePorts(2)) as [number, number];
  writeFileSync(join(dir, 'cassandra.yaml'), yaml(storagePort, nativePort) + (options.extraYaml ? `${options.extraYaml}\n` : ''));
  writeFileSync(join(dir, 'logback.xml'), logbackXml(systemLog));

  const flags = [...FAST_FLAGS.filter((f) => !(options.fullJit && f.startsWith('-XX:TieredStopAtLevel'))), ...JPMS_FLAGS];
  mkdirSync(cdsDir, { recursive: true });
  const archive = cdsArchivePath(javaVersion, flags, classpath);
  const haveArchive = existsSync(archive);
  // Written at exit to a temp name and renamed after a clean stop, so a run that is killed while
  // dumping never leaves a truncated archive under the real name.
  const archiveTmp = `${archive}.partial-${process.pid}`;
  const cdsFlag = haveArchive ? `-XX:SharedArchiveFile=${archive}` : `-XX:ArchiveClassesAtExit=${archiveTmp}`;

  const args = [
    ...flags,
    cdsFlag,
    '-Dcassandra-foreground=yes',
    `-Dcassandra.config=file://${join(dir, 'cassandra.yaml')}`,
    `-Dcassandra.storagedir=${dir}`,
    `-Dcassandra.logdir=${logDir}`,
    `-Dlogback.configurationFile=${join(dir, 'logback.xml')}`,
    '-cp',
    classpath,
    'org.apache.cassandra.service.CassandraDaemon',
  ];
  const outFd = openSync(outputLog, 'a');
  const launchedAt = Date.now();
  const child = spawnTied(java, args, { stdio: ['ignore', outFd, outFd], cwd: dir });
  closeSync(outFd);

  const stop = async (): Promise<void> => {
    const result = await stopServer(child, STOP_GRACE_MS);
    if (!haveArchive) {
      if (!result.killed && existsSync(archiveTmp) && statSync(archiveTmp).size > 0) {
        // Archives for another JVM or classpath are dead weight (about 60 MB each).
        for (const old of readdirSync(cdsDir).filter((f) => f.endsWith('.jsa'))) {
          rmSync(join(cdsDir, old), { force: true });
        }
        renameSync(archiveTmp, archive);
      } else {
        rmSync(archiveTmp, { force: true });
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitUntilReady(nativePort, exitPromise(child));
  } catch (err) {
    const tail = (file: string): string =>
      existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-40).join('\n') : '(none)';
    const systemTail = tail(systemLog);
    const outputTail = tail(outputLog);
    console.error(`[cassandra] start failed; last lines of its log (WARN and above):\n${systemTail}`);
    console.error(`[cassandra] last lines of the JVM's own output:\n${outputTail}`);
    await stop();
    const portClash = /BindException|already in use/i.test(systemTail + outputTail);
    throw new Error(
      `Cassandra did not start (CQL port ${nativePort}, storage port ${storagePort}): ${(err as Error).message}` +
        (portClash ? ' (address already in use)' : ''),
    );
  }
  if (child.pid === undefined || !isRunning(child)) throw new Error('Cassandra exited right after start');
  return {
    contactPoints: [`127.0.0.1:${nativePort}`],
    localDataCenter: LOCAL_DC,
    pid: child.pid,
    startMs: Date.now() - launchedAt,
    stop,
  };
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitUntilReady(nativePort: number, exited: Promise<string>): Promise<void> {
  let exitReason: string | undefined;
  void exited.then((reason) => (exitReason = reason));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const check = (): void => {
    if (exitReason) throw new Error(`the JVM ${exitReason}`);
    if (Date.now() > deadline) throw new Error(`not ready within ${READY_TIMEOUT_MS} ms`);
  };
  while (!(await portAccepts(nativePort))) {
    check();
    await sleep(50);
  }
  let lastError = '';
  for (;;) {
    const client = new cassandra.Client({
      contactPoints: [`127.0.0.1:${nativePort}`],
      localDataCenter: LOCAL_DC,
      socketOptions: { connectTimeout: 5_000, readTimeout: 10_000 },
    });
    try {
      const rs = await client.execute('SELECT release_version FROM system.local');
      const version = String(rs.first()?.get('release_version'));
      if (!version.startsWith('5.')) throw new Error(`unexpected release_version ${version}`);
      return;
    } catch (err) {
      lastError = (err as Error).message;
    } finally {
      await client.shutdown().catch(() => {});
    }
    try {
      check();
    } catch (err) {
      throw new Error(`${(err as Error).message}; last CQL error: ${lastError}`);
    }
    await sleep(100);
  }
}
