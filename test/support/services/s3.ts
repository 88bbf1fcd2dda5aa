/**
 * A throw-away S3-compatible server for tests: s3proxy (org.gaul:s3proxy, the jar-with-dependencies
 * from Maven Central) with its in-memory `transient` backend, on a free loopback port, run on the
 * machine's Java 17. Test files that need it start it themselves (`startS3()`) and stop it in their
 * teardown; nothing is left on disk but the cached jar.
 *
 * Cache (git-ignored): `.cache/s3proxy/s3proxy-<version>-jar-with-dependencies.jar`, fetched once with
 * Maven (`mvn dependency:copy`, so Maven's mirrors and proxies apply), its own local repository in
 * `.cache/s3proxy/m2`. About 55 MB; the first fetch takes ~30 s.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { aptInstall, commandExists, exitPromise, freePorts, spawnTied, stopServer } from './process.js';

export const S3PROXY_VERSION = '4.1.0';
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

export interface S3Service {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  pid: number;
  stop(): Promise<void>;
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cacheDir = join(repoRoot, '.cache', 's3proxy');
const jarName = `s3proxy-${S3PROXY_VERSION}-jar-with-dependencies.jar`;
const jarPath = join(cacheDir, jarName);

function fetchJar(): void {
  if (!commandExists('mvn')) aptInstall(['maven'], 'Maven is missing (it fetches the s3proxy jar)');
  mkdirSync(cacheDir, { recursive: true });
  const staging = join(cacheDir, `out.partial-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  console.log(`[s3] fetching org.gaul:s3proxy:${S3PROXY_VERSION} (jar-with-dependencies) into ${cacheDir}`);
  const started = Date.now();
  const mvn = spawnSync(
    'mvn',
    [
      '-q',
      '-B',
      `-Dmaven.repo.local=${join(cacheDir, 'm2')}`,
      'dependency:copy',
      `-Dartifact=org.gaul:s3proxy:${S3PROXY_VERSION}:jar:jar-with-dependencies`,
      `-DoutputDirectory=${staging}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', cwd: cacheDir },
  );
  if (mvn.status !== 0 || !existsSync(join(staging, jarName))) {
    console.error(mvn.stdout, mvn.stderr);
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`s3proxy jar: mvn dependency:copy failed (exit ${mvn.status})`);
  }
  // Renamed into place only when complete, so an interrupted fetch never looks usable.
  renameSync(join(staging, jarName), jarPath);
  rmSync(staging, { recursive: true, force: true });
  rmSync(join(cacheDir, 'm2', 'org', 'gaul'), { recursive: true, force: true }); // the copy in m2 would double the cache
  console.log(`[s3] fetched in ${Date.now() - started} ms`);
}

function ping(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(endpoint, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(true); // any HTTP answer (403 without credentials) means it is serving
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** Starts s3proxy; must be called from the main thread (the child is tied to it). */
export async function startS3(): Promise<S3Service> {
  if (!commandExists('java')) aptInstall(['openjdk-17-jre-headless'], 'Java is missing (s3proxy runs on it)');
  if (!existsSync(jarPath)) fetchJar();
  const [port] = await freePorts(1);
  const endpoint = `http://127.0.0.1:${port}`;
  const accessKeyId = 'test-' + randomBytes(4).toString('hex');
  const secretAccessKey = randomBytes(16).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'ticks-s3-'));
  const props = join(dir, 's3proxy.properties');
  writeFileSync(
    props,
    [
      `s3proxy.endpoint=${endpoint}`,
      's3proxy.authorization=aws-v2-or-v4',
      `s3proxy.identity=${accessKeyId}`,
      `s3proxy.credential=${secretAccessKey}`,
      'jclouds.provider=transient',
      'jclouds.identity=unused',
      'jclouds.credential=unused',
      '',
    ].join('\n'),
  );
  const child = spawnTied('java', ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-jar', jarPath, '--properties', props], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const stop = async (): Promise<void> => {
    await stopServer(child, STOP_GRACE_MS);
    rmSync(dir, { recursive: true, force: true });
  };
  const died = exitPromise(child);
  let exited: string | undefined;
  void died.then((how) => {
    exited = how;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await ping(endpoint))) {
    if (exited !== undefined || Date.now() > deadline) {
      await stop();
      throw new Error(`s3proxy did not start at ${endpoint} (${exited ?? 'timed out'}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
    }
    await sleep(100);
  }
  return { endpoint, region: 'us-east-1', accessKeyId, secretAccessKey, pid: child.pid!, stop };
}
