import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, configLeaves, envName, loadConfig } from '../../src/config/load.js';

const noFile = { file: null } as const;

t.test('defaults load with no file and no environment', async (t) => {
  const cfg = loadConfig({ ...noFile, env: {} });
  t.equal(cfg.store.engine, 'embedded');
  t.equal(cfg.store.bucketSize, 1000);
  t.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.store.scylla.contactPoints), 'the result is deeply frozen');
});

t.test('environment variables are typed by the schema', async (t) => {
  const cfg = loadConfig({
    ...noFile,
    env: {
      TICKS_STORE_ENGINE: 'scylla',
      TICKS_STORE_BUCKET_SIZE: '250',
      TICKS_STORE_SCYLLA_CONTACT_POINTS: '10.0.0.1:9042, 10.0.0.2:9042',
      TICKS_STORE_SCYLLA_REPLICATION: '{"class":"NetworkTopologyStrategy","dc1":"3"}',
    },
  });
  t.equal(cfg.store.engine, 'scylla');
  t.equal(cfg.store.bucketSize, 250);
  t.same(cfg.store.scylla.contactPoints, ['10.0.0.1:9042', '10.0.0.2:9042']);
  t.same(cfg.store.scylla.replication, { class: 'NetworkTopologyStrategy', dc1: '3' });
});

t.test('an invalid value names the key, the value and its source', async (t) => {
  try {
    loadConfig({ ...noFile, env: { TICKS_STORE_BUCKET_SIZE: 'lots', TICKS_STORE_ENGINE: 'mongo' } });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    const msg = (err as Error).message;
    t.match(msg, /store\.bucketSize = "lots" \(from TICKS_STORE_BUCKET_SIZE\)/);
    t.match(msg, /store\.engine = "mongo" \(from TICKS_STORE_ENGINE\)/);
  }
});

t.test('a config file is layered under the environment and unknown keys are rejected', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ store: { bucketSize: 77, embedded: { path: '/x' } } }));
  const cfg = loadConfig({ file, env: { TICKS_STORE_BUCKET_SIZE: '88' } });
  t.equal(cfg.store.bucketSize, 88, 'environment wins over the file');
  t.equal(cfg.store.embedded.path, '/x');
  writeFileSync(file, JSON.stringify({ store: { bucketSzie: 77 } }));
  t.throws(() => loadConfig({ file, env: {} }), /bucketSzie/, 'a misspelt key is named');
  writeFileSync(file, '{ not json');
  t.throws(() => loadConfig({ file, env: {} }), /not valid JSON/);
  t.throws(() => loadConfig({ file: join(dir, 'missing.json'), env: {} }), /cannot read/);
});

t.test('unknown TICKS_* variables are warned about', async (t) => {
  const warnings: string[] = [];
  loadConfig({ ...noFile, env: { TICKS_STORE_ENGIN: 'x', TICKS_TEST_REDIS_URL: 'redis://x' }, warn: (m) => warnings.push(m) });
  t.same(warnings, ['config: unknown environment variable TICKS_STORE_ENGIN is ignored']);
});

t.test('every leaf key has a distinct environment name', async (t) => {
  const names = configLeaves().map((l) => l.envName);
  t.equal(new Set(names).size, names.length);
  t.equal(envName(['store', 'scylla', 'contactPoints']), 'TICKS_STORE_SCYLLA_CONTACT_POINTS');
});
