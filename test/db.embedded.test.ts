import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { cli, startCli, waitFor } from './helpers.js';

/** With no DATABASE_URL prescore starts its own real PostgreSQL (and not on port 5432). */
describe('embedded PostgreSQL', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-home-'));
  fs.chmodSync(home, 0o777);
  after(() => fs.rmSync(home, { recursive: true, force: true }));

  test('the demo runs end to end with no server configured', async () => {
    const r = await cli(null, ['demo'], { DATABASE_URL: undefined, PRESCORE_HOME: home, PRESCORE_LOG_LEVEL: 'info' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no DATABASE_URL: started an embedded PostgreSQL/);
    const port = /"port":(\d+)/.exec(r.stderr)?.[1];
    assert.ok(port && port !== '5432', `port ${port}`);
    assert.match(r.stdout, /flower +1: setosa /);
    assert.match(r.stdout, /run \d+ published: iris-species \S+, model iris v1, 150 read, 150 written, 0 rejected/);
    assert.ok(fs.existsSync(path.join(home, 'pg', 'PG_VERSION')));
    // The data persists: a second command sees the first one's model.
    const list = await cli(null, ['models', 'list', '--json'], { DATABASE_URL: undefined, PRESCORE_HOME: home });
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
});
