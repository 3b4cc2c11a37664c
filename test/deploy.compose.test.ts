import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { containersEnv } from './container-helpers.js';
import { repoFile, undeclaredFlags } from './deploy-helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- the compose file is checked field by field below */
const compose = parse(fs.readFileSync(repoFile('docker-compose.yml'), 'utf8'), { merge: true }) as any;
const services = compose.services as Record<string, any>;

const PRESCORE = ['migrate', 'worker', 'scheduler', 'api'];
const LONG_RUNNING = ['postgres', 'redis', 'worker', 'scheduler', 'api', 'prometheus', 'grafana'];
const MONITORING = ['prometheus', 'grafana'];
/** The Prometheus and Grafana files of deploy/, by these names; the monitoring services mount each one. */
const MONITORING_FILES = [
  'deploy/prometheus/prometheus.yml',
  'deploy/prometheus/alerts.yml',
  'deploy/grafana/provisioning/datasources/prometheus.yml',
  'deploy/grafana/provisioning/dashboards/prescore.yml',
  'deploy/grafana/dashboards/prescore.json',
];

const hostMounts = (name: string): string[] =>
  ((services[name].volumes ?? []) as string[]).map((v) => v.split(':')[0]!).filter((src) => src.startsWith('.'));

describe('docker-compose.yml', () => {
  test('holds the whole stack, the monitoring services behind a profile', () => {
    assert.deepEqual(Object.keys(services).sort(), [...LONG_RUNNING, 'migrate'].sort());
    for (const name of Object.keys(services)) {
      assert.deepEqual(services[name].profiles, MONITORING.includes(name) ? ['monitoring'] : undefined, name);
    }
  });

  test('one prescore image runs every role, built from this repository; job files come from ./jobs', () => {
    for (const name of PRESCORE) {
      const s = services[name];
      assert.equal(s.image, '${PRESCORE_IMAGE:-prescore:latest}', name);
      assert.equal(s.build, '.', name);
      assert.ok(s.volumes.includes('./jobs:/app/jobs:ro'), `${name} mounts ./jobs`);
      assert.equal(s.environment.PRESCORE_JOBS_DIR, '/app/jobs', name);
      assert.match(s.environment.DATABASE_URL, /@postgres:5432\/prescore$/, name);
      assert.equal(s.environment.REDIS_URL, 'redis://redis:6379', name);
    }
    assert.deepEqual(services.migrate.command, ['migrate']);
    assert.deepEqual(services.worker.command, ['worker', '--metrics-port', '9464', '--metrics-host', '0.0.0.0']);
    assert.deepEqual(services.scheduler.command, ['scheduler', '--metrics-port', '9464', '--metrics-host', '0.0.0.0']);
    assert.deepEqual(services.api.command, [
      'serve',
      '--host',
      '0.0.0.0',
      '--port',
      '8080',
      '--ops-port',
      '9465',
      '--ops-host',
      '0.0.0.0',
    ]);
  });

  // worker and scheduler are started with --metrics-port/--metrics-host: each flag must be declared.
  test('every flag a service passes is one its role declares', () => {
    for (const name of PRESCORE) assert.deepEqual(undeclaredFlags(services[name].command), [], name);
  });

  test('migrate runs once, after PostgreSQL is healthy; the prescore services wait for it to succeed', () => {
    assert.equal(services.migrate.restart, 'no');
    assert.deepEqual(services.migrate.depends_on, { postgres: { condition: 'service_healthy' } });
    for (const name of ['worker', 'scheduler', 'api']) {
      assert.deepEqual(services[name].depends_on.migrate, { condition: 'service_completed_successfully' }, name);
    }
    for (const name of ['worker', 'scheduler']) {
      assert.deepEqual(services[name].depends_on.redis, { condition: 'service_healthy' }, `${name} waits for Redis`);
    }
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(s.depends_on ?? {}))
        assert.ok(services[dep], `${name} depends on a service that exists: ${dep}`);
    }
  });

  test('every long-running service has a healthcheck and a restart policy', () => {
    for (const name of LONG_RUNNING) {
      const s = services[name];
      assert.ok(s.healthcheck?.test, `${name}: healthcheck`);
      assert.ok(s.healthcheck.interval, `${name}: healthcheck interval`);
      assert.ok(['always', 'unless-stopped', 'on-failure'].includes(s.restart), `${name}: restart ${s.restart}`);
    }
    for (const name of ['worker', 'scheduler', 'api']) {
      // podman-compose 1.0 consumes a list-form test on a service's first replica.
      assert.equal(services[name].healthcheck.test, 'node /app/deploy/healthcheck.mjs', name);
    }
  });

  test('two workers and two schedulers; a worker may take a whole chunk to drain', () => {
    assert.equal(services.worker.deploy.replicas, 2);
    assert.equal(services.scheduler.deploy.replicas, 2);
    assert.ok(parseInt(services.worker.stop_grace_period, 10) > 900, 'stop_grace_period beyond chunkTimeoutSeconds');
  });

  test('Redis persists (appendonly, a volume) and never evicts; data lives in named volumes', () => {
    const redis = services.redis;
    assert.deepEqual(redis.command.slice(0, 3), ['redis-server', '--appendonly', 'yes']);
    assert.equal(redis.command[redis.command.indexOf('--maxmemory-policy') + 1], 'noeviction');
    assert.ok(redis.volumes.includes('redisdata:/data'));
    assert.ok(services.postgres.volumes.includes('pgdata:/var/lib/postgresql/data'));
    const named = Object.values(services).flatMap((s: any) =>
      ((s.volumes ?? []) as string[]).map((v) => v.split(':')[0]!).filter((src) => !src.startsWith('.')),
    );
    assert.deepEqual([...new Set(named)].sort(), Object.keys(compose.volumes).sort(), 'every named volume is declared and used');
  });

  test('published ports are overridable; the token-free ops port is on loopback only', () => {
    const ports = Object.fromEntries(Object.entries(services).map(([n, s]) => [n, s.ports ?? []]));
    assert.deepEqual(ports.postgres, ['${PRESCORE_PG_PORT:-5432}:5432']);
    assert.deepEqual(ports.redis, ['${PRESCORE_REDIS_PORT:-6379}:6379']);
    assert.deepEqual(ports.api, ['${PRESCORE_API_PORT:-8080}:8080', '127.0.0.1:${PRESCORE_OPS_PORT:-9465}:9465']);
    assert.deepEqual(ports.worker, [], 'workers publish nothing: Prometheus scrapes them by service name');
    for (const list of Object.values(ports)) for (const p of list) assert.match(p, /\$\{PRESCORE_\w+_PORT:-\d+\}:\d+$/);
  });

  test('the monitoring services mount the Prometheus and Grafana files of deploy/, and each exists', () => {
    assert.deepEqual(
      [...hostMounts('prometheus'), ...hostMounts('grafana')].sort(),
      MONITORING_FILES.map((f) => `./${f}`).sort(),
    );
    // A missing source is created as an empty directory by the engine, then mounted as one.
    const notFiles = MONITORING_FILES.filter((f) => !fs.statSync(repoFile(f), { throwIfNoEntry: false })?.isFile());
    assert.deepEqual(notFiles, [], 'each mounted monitoring file exists as a file');
  });

  const podmanCompose = spawnSync('podman-compose', ['version'], { stdio: 'ignore' }).status === 0;
  test(
    'podman-compose reads the file and starts the replicas (a dry run: nothing is started)',
    { skip: podmanCompose ? false : 'podman-compose is not installed (apt-get install podman-compose)' },
    () => {
      // Even a dry run creates missing bind-mount sources as directories: run it on a copy
      // elsewhere, so nothing appears in the repository where a file is expected.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-compose-'));
      const project = `prescore-dryrun-${path.basename(dir).slice(-6).toLowerCase()}`;
      fs.copyFileSync(repoFile('docker-compose.yml'), path.join(dir, 'docker-compose.yml'));
      fs.symlinkSync(repoFile('Dockerfile'), path.join(dir, 'Dockerfile')); // it looks for the build context's
      const out = spawnSync(
        'podman-compose',
        ['--dry-run', '-p', project, '-f', path.join(dir, 'docker-compose.yml'), 'up', '-d'],
        {
          encoding: 'utf8',
          cwd: dir,
          env: containersEnv(),
          timeout: 60_000,
        },
      );
      fs.rmSync(dir, { recursive: true, force: true });
      // It also creates the project's volumes and network.
      for (const v of Object.keys(compose.volumes))
        spawnSync('podman', ['volume', 'rm', `${project}_${v}`], { env: containersEnv(), stdio: 'ignore' });
      spawnSync('podman', ['network', 'rm', `${project}_default`], { env: containersEnv(), stdio: 'ignore' });
      assert.equal(out.status, 0, out.stderr);
      const names = [...out.stdout.matchAll(new RegExp(`--name=${project}_(\\w+)`, 'g'))].map((m) => m[1]);
      for (const n of ['postgres_1', 'redis_1', 'migrate_1', 'api_1', 'worker_1', 'worker_2', 'scheduler_1', 'scheduler_2']) {
        assert.ok(names.includes(n), `podman-compose would start ${n} (got ${names.join(', ')})`);
      }
    },
  );
});
