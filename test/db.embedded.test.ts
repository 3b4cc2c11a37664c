import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { packageRoot } from '../src/paths.js';
import { cli, startCli, waitFor } from './helpers.js';

/** With no DATABASE_URL prescore starts its own real PostgreSQL (and not on port 5432). */
describe('embedded PostgreSQL', () => {
  // Private, as mkdtemp makes it (0700): as root, the server then runs from copies the
  // postgres user can reach (PRESCORE_EMBEDDED_DIR), not from here.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-home-'));
  assert.equal(fs.statSync(home).mode & 0o777, 0o700);
  // Where root's copies and data go: a directory of this test file's own (0755, as root makes it).
  const embeddedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-embedded-'));
  fs.chmodSync(embeddedDir, 0o755);
  after(() => {
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(embeddedDir, { recursive: true, force: true });
  });

  test('the demo runs end to end with no server configured', async () => {
    const r = await cli(null, ['demo'], {
      DATABASE_URL: undefined,
      PRESCORE_HOME: home,
      PRESCORE_EMBEDDED_DIR: embeddedDir,
      PRESCORE_LOG_LEVEL: 'info',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no DATABASE_URL: started an embedded PostgreSQL/);
    const port = /"port":(\d+)/.exec(r.stderr)?.[1];
    assert.ok(port && port !== '5432', `port ${port}`);
    assert.match(r.stdout, /flower +1: setosa /);
    assert.match(r.stdout, /run \d+ published: iris-species \S+, model iris v1, 150 read, 150 written, 0 rejected/);
    // Under the home, or (as root, the home being private) under PRESCORE_EMBEDDED_DIR: the log says where.
    const dataDir = /"dataDir":"([^"]+)"/.exec(r.stderr)?.[1];
    assert.ok(dataDir && fs.existsSync(path.join(dataDir, 'PG_VERSION')), `data in ${dataDir}`);
    if (process.getuid?.() !== 0) assert.equal(dataDir, path.join(home, 'pg'));
    // The data persists: a second command sees the first one's model.
    const list = await cli(null, ['models', 'list', '--json'], {
      DATABASE_URL: undefined,
      PRESCORE_HOME: home,
      PRESCORE_EMBEDDED_DIR: embeddedDir,
    });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { name: string }[]).map((m) => m.name),
      ['iris'],
    );
  });

  test('a worker on the embedded server (queue on its PostgreSQL backend) drains on SIGTERM and exits 0', async () => {
    const worker = startCli(null, ['worker'], {
      DATABASE_URL: undefined,
      REDIS_URL: undefined,
      PRESCORE_HOME: home,
      PRESCORE_EMBEDDED_DIR: embeddedDir,
      PRESCORE_LOG_LEVEL: 'info',
    });
    await waitFor('the worker to start', () => /worker started/.test(worker.output().stderr), 30_000);
    assert.match(worker.output().stderr, /BullMQ PostgreSQL backend/);
    worker.kill('SIGTERM');
    const r = await worker.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /worker stopped/);
    assert.doesNotMatch(r.stderr, /TypeError|Error:/);
  });

  test('the quick start from a fresh clone in a private (0700) directory, as root', { timeout: 240_000 }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip('only root meets this: PostgreSQL then runs as another user');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-clone-'));
    try {
      assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
      const clone = path.join(dir, 'prescore');
      const run = (cmd: string, args: string[], cwd: string) => {
        const r = spawnSync(cmd, args, {
          cwd,
          encoding: 'utf8',
          env: { ...process.env, DATABASE_URL: undefined, PRESCORE_HOME: undefined, PRESCORE_EMBEDDED_DIR: embeddedDir },
        });
        assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
        return r;
      };
      run('git', ['clone', '-q', '--no-hardlinks', packageRoot, clone], dir);
      // The installed packages, hard-linked: their files now live inside the private directory too.
      run('cp', ['-al', path.join(packageRoot, 'node_modules'), path.join(clone, 'node_modules')], dir);
      run(process.execPath, [path.join(clone, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], clone);
      const demo = run(process.execPath, [path.join(clone, 'bin', 'prescore.js'), 'demo'], clone);
      const lines = demo.stdout.trim().split('\n');
      assert.match(
        lines[lines.length - 1]!,
        /^run \d+ published: iris-species \S+, model iris v1, 150 read, 150 written, 0 rejected/,
      );
      assert.doesNotMatch(demo.stderr, /EACCES|Error:/);
    } finally {
      // The server the demo started in the clone stops with it; its data dir under PRESCORE_EMBEDDED_DIR stays small.
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
