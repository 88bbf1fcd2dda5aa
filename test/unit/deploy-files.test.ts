/**
 * Dockerfile and docker-compose.yml cannot be run on the build machines (no Docker engine), so this
 * checks what can be checked by reading them: every ticks service's environment, layered over the
 * config file the image uses, is a valid configuration without unknown TICKS_* variables; the
 * cluster parts point at the compose services; node ids and published ports are distinct;
 * Prometheus scrapes every node; the Dockerfile copies files that exist and runs the built entry.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (p: string): string => readFileSync(resolve(root, p), 'utf8');

interface ComposeService {
  build?: string;
  image?: string;
  environment?: Record<string, string | number | boolean>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;
const ticksNodes = Object.entries(services).filter(([, s]) => s.build === '.');

/** Compose interpolation of the forms the file uses: ${VAR}, ${VAR:-default}, ${VAR:?message}. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    const v = vars[name];
    if (v !== undefined && v !== '') return v;
    if (op === '-') return arg ?? '';
    throw new Error(`compose variable ${name} is required: ${arg ?? ''}`);
  });
}

const dockerfile = read('Dockerfile');
const imageConfig = /TICKS_CONFIG=(\S+)/.exec(dockerfile)?.[1];

t.test('the Dockerfile builds from files that exist and runs the compiled entry', async (t) => {
  t.ok(imageConfig, 'the image sets TICKS_CONFIG');
  t.equal(imageConfig?.startsWith('/app/'), true, 'TICKS_CONFIG lies inside /app');
  t.ok(existsSync(resolve(root, imageConfig!.slice('/app/'.length))), `${imageConfig} is copied from the repository`);
  const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
  t.ok(copies.length >= 4, 'the build stage copies sources');
  for (const src of copies) t.ok(existsSync(resolve(root, src)), `COPY source ${src} exists`);
  t.match(dockerfile, /CMD \["node", "dist\/main\.js"\]/, 'runs the compiled entry');
  t.match(read('tsconfig.build.json'), /"outDir":\s*"dist"/, 'the build writes dist/');
  t.match(dockerfile, /^USER node$/m, 'runs as a non-root user');
});

t.test('every ticks service of docker-compose.yml has a valid cluster configuration', async (t) => {
  t.equal(ticksNodes.length, 3, 'three ticks nodes');
  const vars = { TICKS_AUTH_HS256_SECRET: 'x'.repeat(64) };
  const nodeIds = new Set<string>();
  const ports = new Set<string>();
  for (const [name, svc] of ticksNodes) {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(svc.environment ?? {})) env[k] = interpolate(String(v), vars);
    const warnings: string[] = [];
    const cfg = loadConfig({ env, file: resolve(root, imageConfig!.slice('/app/'.length)), warn: (m) => warnings.push(m) });
    t.same(warnings, [], `${name}: no unknown or ignored TICKS_* variables`);
    t.equal(cfg.store.engine, 'scylla', `${name}: stores to ScyllaDB`);
    const scyllaHost = cfg.store.scylla.contactPoints[0]!.split(':')[0]!;
    t.ok(services[scyllaHost], `${name}: contact point ${scyllaHost} is a compose service`);
    const redisUrl = cfg.cluster.redisUrl;
    t.ok(redisUrl, `${name}: cluster mode (cluster.redisUrl set)`);
    t.ok(services[new URL(redisUrl!).hostname], `${name}: Redis host is a compose service`);
    t.equal(cfg.gateway.host, '0.0.0.0', `${name}: listens on every interface inside the container`);
    t.equal(cfg.auth.devTokens, false, `${name}: dev tokens are off`);
    t.ok(cfg.nodeId, `${name}: has a node id`);
    nodeIds.add(cfg.nodeId ?? '');
    for (const p of svc.ports ?? []) ports.add(p.split(':')[0]!);
    for (const dep of Object.keys(svc.depends_on ?? {})) t.ok(services[dep], `${name}: depends on ${dep}, which exists`);
  }
  t.equal(nodeIds.size, ticksNodes.length, 'node ids are distinct');
  t.equal(ports.size, ticksNodes.length, 'published ports are distinct');
});

t.test('Prometheus scrapes every ticks node', async (t) => {
  const prom = parse(read('config/prometheus.yml')) as {
    scrape_configs: { static_configs: { targets: string[] }[] }[];
  };
  const targets = prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
  for (const [name] of ticksNodes) t.ok(targets.includes(`${name}:8080`), `scrapes ${name}:8080`);
});
