import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import {
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopAll, type Proc, stopStartedWorkers } from './queue.helpers.js';

const DATES = ['2026-11-10', '2026-11-11', '2026-11-12', '2026-11-13'];
/** Far more than the few seconds the check takes; without it the command never ends. */
const HANG_MS = 30_000;

/** `run --queue` and `backfill` with no `prescore worker` say so and exit, instead of waiting in silence. */
describe('no worker on the queue', () => {
  let db: TestDb;
  let workers: Proc[] = [];
  const prefix = queuePrefix('noworker');
  const backends = {
    redis: { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix },
    postgres: { REDIS_URL: undefined },
  };
  before(async () => {
    db = await createTestDb('noworker');
    for (const date of DATES) await seedFeatures(db.pool, 'feats', { rows: 3000, features: 4, date });
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('nw', 'lin@champion', 'feats', featureNames(4)));
  });
  after(async () => {
    await stopStartedWorkers();
    await obliterate(prefix);
    await db.drop();
  });

  const status = async (id: string) =>
    (await db.pool.query<{ status: string }>('SELECT status FROM prescore.runs WHERE id = $1', [id])).rows[0]?.status;

  /** Runs the CLI, killing it (and failing) if it has not ended after HANG_MS. */
  const bounded = async (args: string[], env: Record<string, string | undefined>) => {
    const child = startCli(db, args, env);
    const timer = setTimeout(() => child.kill('SIGKILL'), HANG_MS);
    const r = await child.done;
    clearTimeout(timer);
    assert.notEqual(r.signal, 'SIGKILL', `${args.join(' ')} still waiting after ${HANG_MS} ms:\n${r.stderr}`);
    return r;
  };

  for (const [backend, env] of Object.entries(backends)) {
    test(`${backend}: run --queue with no worker exits 3 saying so; the run stays queued and a worker started later does it`, async () => {
      const date = backend === 'redis' ? DATES[0]! : DATES[1]!;
      const r = await bounded(['run', 'nw', '--date', date, '--queue'], env);
      assert.equal(r.code, 3, r.stderr);
      assert.match(
        r.lastError,
        /^error: no worker is listening on queue chunks \(.*\); start one with `prescore worker` with the same DATABASE_URL/,
      );
      const id = /Run (\d+) stays queued/.exec(r.lastError)?.[1];
      assert.ok(id, r.lastError);
      assert.equal(await status(id), 'running');
      workers = startWorkers(db, 1, env);
      await waitFor(
        'the queued run to publish',
        async () => ((await status(id)) === 'published' ? true : undefined),
        60_000,
        200,
      );
      await stopAll(workers);
      workers = [];
    });
  }

  test('--wait-for-workers says so once and keeps waiting; a worker started later finishes the run', async () => {
    const env = backends.postgres;
    const child = startCli(db, ['run', 'nw', '--date', DATES[2]!, '--queue', '--wait-for-workers', '--json'], env);
    await waitFor('the no-worker notice', () => /no worker is listening on queue chunks/.test(child.output().stderr), HANG_MS);
    await sleep(1000);
    assert.equal(child.exitCode(), null, 'still waiting');
    assert.equal(child.output().stderr.match(/no worker is listening/g)!.length, 1);
    assert.match(child.output().stderr, /waiting for one \(--wait-for-workers\)/);
    workers = startWorkers(db, 1, env);
    const r = await child.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { status: string }).status, 'published');
    await stopAll(workers);
    workers = [];
  });

  test('backfill through the queue with no worker exits 3 the same way', async () => {
    const r = await bounded(['backfill', 'nw', '--from', DATES[3]!, '--to', DATES[3]!], backends.redis);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.lastError, /^error: no worker is listening on queue chunks/);
  });
});
