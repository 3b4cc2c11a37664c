import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../src/paths.js';
import { ensureNodeBase, podmanUnavailable, run } from './container-helpers.js';
import { createTestDb, type TestDb } from './helpers.js';

/**
 * The Dockerfile, built for real on a locally made Node base (no registry here) and run with
 * the host's network against a fresh database on the host's PostgreSQL.
 */
const skip = podmanUnavailable() ?? false;
const IMAGE = 'localhost/prescore:ci';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const tag = crypto.randomBytes(3).toString('hex');
const started: string[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** `podman run` with the host's network, a container name this file removes afterwards. */
/** What deploy/k8s asks of every pod: read-only root, /tmp writable, no capabilities, no escalation. */
const HARDENED = [
  '--read-only',
  '--tmpfs',
  '/tmp',
  '-e',
  'PRESCORE_HOME=/tmp/prescore',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
];

function podmanRun(
  db: TestDb,
  name: string,
  args: string[],
  opts: { detach?: boolean; entrypoint?: string; hardened?: boolean } = {},
) {
  const container = `prescore-ci-${name}-${tag}`;
  started.push(container);
  return run(
    'podman',
    [
      'run',
      ...(opts.detach ? ['-d'] : ['--rm']),
      '--name',
      container,
      '--network',
      'host',
      ...(opts.entrypoint ? ['--entrypoint', opts.entrypoint] : []),
      ...(opts.hardened ? HARDENED : []),
      '-e',
      `DATABASE_URL=${db.url}`,
      '-e',
      'PRESCORE_LOG_LEVEL=warn',
      IMAGE,
      ...args,
    ],
    { timeoutMs: 120_000 },
  ).then((r) => ({ ...r, container }));
}

test('.dockerignore keeps history, host builds, tests, local state, secrets and models out of the build context', () => {
  const patterns = fs
    .readFileSync(path.join(packageRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));
  for (const p of ['.git', '**/node_modules', 'dist', 'test', 'bench', '.prescore', '**/*.onnx', '**/.env', 'secrets']) {
    assert.ok(patterns.includes(p), `.dockerignore has ${p}`);
  }
  assert.ok(!patterns.some((p) => p.startsWith('!')), 'no exception re-includes anything');
});

describe('the container image', { skip }, () => {
  let db: TestDb;
  let inspect: {
    Size: number;
    Config: { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[]; Healthcheck?: { Test: string[] } };
    /** podman puts a docker-format image's HEALTHCHECK here (an OCI image has none). */
    Healthcheck?: { Test: string[] };
  };

  before(async () => {
    db = await createTestDb('deploy_image');
    const base = await ensureNodeBase();
    const build = await run(
      'podman',
      [
        'build',
        '--format',
        'docker',
        '--build-arg',
        `BASE=${base.image}`,
        '--secret',
        `id=npm_ca,src=${CA_BUNDLE}`,
        '-t',
        IMAGE,
        packageRoot,
      ],
      { timeoutMs: 900_000 },
    );
    assert.equal(build.code, 0, build.stderr.slice(-3000));
    const cached = (build.stdout.match(/--> Using cache/g) ?? []).length;
    inspect = JSON.parse((await run('podman', ['image', 'inspect', IMAGE])).stdout)[0];
    process.stdout.write(
      `base ${base.image}: ${base.made ? 'made' : 'reused'} in ${(base.ms / 1000).toFixed(1)} s\n` +
        `image ${IMAGE}: built in ${(build.ms / 1000).toFixed(1)} s (${cached} steps from cache), ` +
        `${(inspect.Size / 1e6).toFixed(0)} MB\n`,
    );
  });

  after(async () => {
    for (const c of started) await run('podman', ['rm', '-f', '-t', '0', c]);
    const left = await run('podman', ['ps', '-a', '--filter', `name=prescore-ci-.*-${tag}`, '--format', '{{.Names}}']);
    assert.equal(left.stdout.trim(), '', 'no container of this test is left');
    await db?.drop();
  });

  test('prescore demo runs end to end in the container against the host database', async () => {
    const r = await podmanRun(db, 'demo', ['demo']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^seeded demo\.iris_features: 150 flowers/m);
    assert.match(r.stdout, /^trained a softmax regression .* registered iris v1 as iris@champion$/m);
    assert.match(r.stdout, /^ {2}flower {3}1: setosa /m);
    assert.match(r.stdout, /^ {2}flower 101: virginica /m);
    assert.match(r.stdout, /^run \d+ published: iris-species \d{4}-\d\d-\d\d, model iris v1, 150 read, 150 written, 0 rejected/m);
    const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM prescore.predictions`);
    assert.equal(rows[0]!.n, '150', 'the predictions are in the host database');
  });

  test('runs as a non-root numeric user, with tini as PID 1 in front of prescore and a heap limit', async () => {
    assert.equal(inspect.Config.User, '10001:10001');
    const id = await podmanRun(db, 'id', ['-u'], { entrypoint: 'id' });
    assert.equal(id.stdout.trim(), '10001');
    assert.deepEqual(inspect.Config.Entrypoint, ['/usr/local/bin/tini', '--', 'node', '/app/bin/prescore.js']);
    assert.deepEqual(inspect.Config.Cmd, [
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
    assert.ok(inspect.Config.Env.some((e) => /^NODE_OPTIONS=--max-old-space-size=\d+$/.test(e)));
    assert.deepEqual((inspect.Healthcheck ?? inspect.Config.Healthcheck)?.Test, ['CMD', 'node', '/app/deploy/healthcheck.mjs']);
  });

  test('holds no tests, models, sources, host builds, git history or build secrets', async () => {
    const r = await podmanRun(
      db,
      'find',
      [
        '-c',
        'find / -xdev \\( -name "*.onnx" -o -path /app/test -o -path /app/bench -o -path /app/src -o -name .git -o -name .env -o -path /run/secrets/npm_ca -o -name "*.ts" -path "/app/dist/*" \\) -print; ls /app',
      ],
      { entrypoint: 'sh' },
    );
    assert.equal(r.code, 0, r.stderr);
    const [found, ls] = [
      r.stdout.split('\n').filter((l) => l.startsWith('/')),
      r.stdout.split('\n').filter((l) => l && !l.startsWith('/')),
    ];
    assert.deepEqual(found, []);
    assert.deepEqual(ls, ['bin', 'deploy', 'dist', 'jobs', 'migrations', 'node_modules', 'package.json']);
    assert.ok(!inspect.Config.Env.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS')), 'the CA secret is not trusted at run time');
  });

  test('serve (hardened as in deploy/k8s) listens as the container asks, the healthcheck sees /readyz, and SIGTERM reaches node through tini', async () => {
    const [port, ops] = [await freePort(), await freePort()];
    const r = await podmanRun(
      db,
      'serve',
      ['serve', '--host', '127.0.0.1', '--port', String(port), '--ops-port', String(ops), '--ops-host', '127.0.0.1'],
      { detach: true, hardened: true },
    );
    assert.equal(r.code, 0, r.stderr);
    let health = await run('podman', ['healthcheck', 'run', r.container]);
    for (let i = 0; i < 60 && health.code !== 0; i++) {
      await sleep(250);
      health = await run('podman', ['healthcheck', 'run', r.container]);
    }
    assert.equal(health.code, 0, `healthcheck: ${health.stdout} ${health.stderr}`);
    const ready = await fetch(`http://127.0.0.1:${ops}/readyz`);
    assert.equal(ready.status, 200);
    // The check fails when the API does not answer: point it at a port nothing listens on.
    const dead = await run('podman', [
      'exec',
      '-e',
      `PRESCORE_HEALTHCHECK_URL=http://127.0.0.1:${await freePort()}/readyz`,
      r.container,
      'node',
      '/app/deploy/healthcheck.mjs',
    ]);
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /^unhealthy: /);

    const stop = await run('podman', ['stop', '-t', '20', r.container]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.ok(stop.ms < 10_000, `stopped on SIGTERM in ${stop.ms} ms, not by the kill after 20 s`);
    const exit = await run('podman', ['inspect', '--format', '{{.State.ExitCode}}', r.container]);
    assert.equal(exit.stdout.trim(), '0', 'serve drained and exited 0');
  });

  test('a worker with a read-only root and no capabilities runs, drains on SIGTERM and exits 0', async () => {
    const r = await podmanRun(db, 'worker', ['worker', '--concurrency', '1'], { detach: true, hardened: true });
    assert.equal(r.code, 0, r.stderr);
    await sleep(3000); // past start-up: connected to the queue (PostgreSQL backend, no REDIS_URL)
    const running = await run('podman', ['inspect', '--format', '{{.State.Running}}', r.container]);
    assert.equal(running.stdout.trim(), 'true', (await run('podman', ['logs', r.container])).stderr);
    const stop = await run('podman', ['stop', '-t', '20', r.container]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.ok(stop.ms < 10_000, `stopped on SIGTERM in ${stop.ms} ms`);
    const exit = await run('podman', ['inspect', '--format', '{{.State.ExitCode}}', r.container]);
    assert.equal(exit.stdout.trim(), '0', (await run('podman', ['logs', r.container])).stderr);
  });
});
