import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { resolveConfig } from '../src/config.js';
import { queueBackend, type QueueBackend } from '../src/queue/connection.js';
import { LATE_QUEUE, lateBacklog, lateJobId } from '../src/queue/late.js';
import { request, runJob, startApi, storedRows, type Item, type RunningApi } from './api-helpers.js';
import { sample } from './metrics-helpers.js';
import {
  assertClose,
  cli,
  createTestDb,
  featureNames,
  holdLock,
  jobSpec,
  logLines,
  registerModel,
  seedFeatures,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { REDIS_URL, obliterate, queuePrefix, startWorkers, stopAll, stopStartedWorkers, type Proc } from './queue.helpers.js';

const D = '2026-11-21';
const F = featureNames(4);
type Late = Item & { source?: string; status?: string; error?: string; rejected?: string; retryAfterSeconds?: number };
type Batch = { predictions: Late[]; missing: string[]; pending?: string[]; notEnqueued?: string[] };

/** How many times workers stored a score for `key` (their debug log lines). */
function scorings(procs: Proc[], key: string): number {
  return procs
    .flatMap((p) => logLines(p.output().stderr))
    .filter((l) => l.msg === 'late key scored' && l.key === key && l.outcome === 'scored').length;
}

/**
 * serving.onMiss "enqueue": a key the served run lacks is answered 202 pending and put on the
 * late queue once; a queue worker scores it with the run's pinned model and the next read
 * answers it with "source": "late". Real PostgreSQL, Redis (and the PostgreSQL backend),
 * worker processes.
 */
describe('enqueue on miss', () => {
  let db: TestDb;
  let server: RunningApi | undefined;
  let backend: QueueBackend;
  let run1: string;
  const prefix = queuePrefix('late');
  const env = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  const procs: Proc[] = [];

  before(async () => {
    db = await createTestDb('api_late');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 100, features: 4, date: D });
    await db.pool.query('UPDATE feats SET f1 = NULL WHERE id = 99'); // the run rejects it
    writeJob(db, jobSpec('late', 'lin@champion', 'feats', F, { serving: { onMiss: 'enqueue' }, keepRuns: 1 }));
    run1 = await runJob(db, 'late', D);
    // A text key: any key text (':' and non-ASCII included) is one hashed job id.
    await seedFeatures(db.pool, 'tfeats', { rows: 5, features: 4, date: D, keyType: 'text', keyExpr: "'k' || g" });
    writeJob(db, jobSpec('late-text', 'lin@champion', 'tfeats', F, { serving: { onMiss: 'enqueue' } }));
    await runJob(db, 'late-text', D);
    await db.pool.query(`INSERT INTO tfeats SELECT 'ключ:1', as_of, f0, f1, f2, f3 FROM tfeats WHERE id = 'k1'`);
    // Rows that arrive after the night's run: keys 101..150, then one the model would reject.
    await seedFeatures(db.pool, 'feats', { rows: 50, features: 4, date: D, keyExpr: 'g + 100' });
    await db.pool.query(`INSERT INTO feats VALUES (151, $1, 1, 'NaN', 0, 0)`, [D]);
    backend = queueBackend(resolveConfig({ DATABASE_URL: db.url, ...env }), db.url);
    server = await startApi(db, { lookupTimeoutMs: 1500, late: { backend, maxKeys: 3 } });
  });
  after(async () => {
    await stopStartedWorkers();
    await server?.close();
    await obliterate(prefix);
    await db?.drop();
  });

  const get = (key: string, query = '', base = server!.base) => request<Late>(base, `/v1/predictions/late/${key}${query}`);
  const metrics = async () => (await request(server!.base, '/metrics')).text;
  const worker = (e: Record<string, string | undefined> = env) => {
    const [p] = startWorkers(db, 1, e);
    procs.push(p!);
    return p!;
  };

  test('a key asked for 100 times while pending is one job, scored once; the next read answers it "late"', async () => {
    const first = await get('120');
    assert.equal(first.status, 202, first.text);
    assert.equal(first.headers.get('retry-after'), '1');
    assert.deepEqual(first.body, { status: 'pending', job: 'late', key: '120', asOf: D, runId: run1, retryAfterSeconds: 1 });
    const many = await Promise.all(Array.from({ length: 100 }, () => get('121')));
    assert.ok(many.every((r) => r.status === 202));
    const queue = backend.queue(LATE_QUEUE);
    try {
      assert.equal(await lateBacklog(queue), 2, 'two keys, two jobs');
      assert.ok(await queue.getJob(lateJobId(run1, '121')));
    } finally {
      await queue.close();
    }
    assert.ok(sample(await metrics(), 'prescore_late_enqueued_total', { prescore_job: 'late' })! >= 101);

    const w = worker();
    const r = await waitFor('key 121 to be scored', async () => {
      const a = await get('121');
      return a.status === 200 ? a : undefined;
    });
    assert.deepEqual(Object.keys(r.body), ['job', 'key', 'asOf', 'runId', 'model', 'score', 'label', 'outputs', 'source']);
    assert.equal(r.body.source, 'late');
    assert.equal(r.body.runId, run1);
    assert.deepEqual(r.body.model, { name: 'lin', version: 1 });
    await waitFor('key 120 too', async () => (await get('120')).status === 200);
    assert.equal(scorings([w], '121'), 1);
    // Stored answers are byte for byte what they were.
    const stored = await get('5');
    assert.deepEqual(Object.keys(stored.body), ['job', 'key', 'asOf', 'runId', 'model', 'score', 'label', 'outputs']);
    assert.ok(sample(await metrics(), 'prescore_late_answers_total', { prescore_job: 'late' })! >= 2);
  });

  test('?wait= holds a GET until the key is stored; bad waits are 400 naming wait', async () => {
    const started = Date.now();
    const r = await get('130', '?wait=8s');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.source, 'late');
    assert.ok(Date.now() - started < 8000);
    for (const bad of ['abc', '11s', '2', '-1s', '1.5s', '10001ms']) {
      const b = await get('131', `?wait=${bad}`);
      assert.equal(b.status, 400, bad);
      assert.match(b.body.error!, /^wait must be a duration like 500ms or 2s, at most 10s/);
    }
    assert.equal((await get('131', '?wait=1&wait=2')).status, 400);
  });

  test('rejected, absent and impossible keys answer 404 with the reason, once stored without enqueueing again', async () => {
    const nan = await get('151', '?wait=8s');
    assert.equal(nan.status, 404, nan.text);
    assert.equal(nan.body.rejected, 'NaN in column f1');
    const absent = await get('9999', '?wait=8s');
    assert.equal(absent.status, 404, absent.text);
    assert.match(absent.body.rejected!, /no row for key "9999" in the source on 2026-11-21/);
    const before = sample(await metrics(), 'prescore_late_enqueued_total', { prescore_job: 'late' });
    for (const key of ['151', '9999', '99', 'abc', '-0']) {
      const r = await get(key);
      assert.equal(r.status, 404, `${key}: ${r.text}`);
    }
    assert.equal((await get('99')).body.rejected, 'NULL in column f1');
    const text = await request<Late>(server!.base, `/v1/predictions/late-text/${encodeURIComponent('ключ:1')}?wait=8s`);
    assert.equal(text.status, 200, text.text);
    assert.equal(text.body.source, 'late');
    assert.equal(text.body.score, (await request<Late>(server!.base, '/v1/predictions/late-text/k1')).body.score);
    assert.match(lateJobId('1', 'ключ:1'), /^late-1-[0-9a-f]{40}$/);
    assert.equal(sample(await metrics(), 'prescore_late_enqueued_total', { prescore_job: 'late' }), before);
  });

  test('a POST answers late rows, lists the keys it enqueued as pending, and the rest beyond the limit', async () => {
    const keys = ['1', '120', '140', '141', '142', '143', '9999'];
    const r = await request<Batch>(server!.base, '/v1/predictions/late', { body: { keys } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.body.predictions.map((p) => [p.key, p.source]),
      [
        ['1', undefined],
        ['120', 'late'],
      ],
    );
    assert.deepEqual(r.body.pending, ['140', '141', '142']);
    assert.deepEqual(r.body.notEnqueued, ['143']);
    assert.deepEqual(r.body.missing, ['140', '141', '142', '143', '9999']);
    await waitFor('the pending keys to be scored', async () => {
      const again = await request<Batch>(server!.base, '/v1/predictions/late', { body: { keys: ['140', '141', '142'] } });
      return again.body.predictions.length === 3;
    });
  });

  test('a POST with ?wait= answers the pending keys stored meanwhile; a bad wait is 400 naming wait', async () => {
    const started = Date.now();
    const r = await request<Batch>(server!.base, '/v1/predictions/late?wait=8s', { body: { keys: ['146', '147', '9998'] } });
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - started < 8000, 'answered when the keys were stored, not at the end of the wait');
    assert.deepEqual(
      r.body.predictions.map((p) => [p.key, p.source]),
      [
        ['146', 'late'],
        ['147', 'late'],
      ],
    );
    // Absent from the source: settled (a 404 reason on a GET), so missing and no longer pending.
    assert.deepEqual(r.body.missing, ['9998']);
    assert.equal(r.body.pending, undefined);
    const bad = await request<Batch>(server!.base, '/v1/predictions/late?wait=abc', { body: { keys: ['148'] } });
    assert.equal(bad.status, 400);
    assert.match((bad.body as unknown as { error: string }).error, /^wait must be a duration like 500ms or 2s/);
  });

  test('a worker killed (-9) while scoring a key does not lose it: another one scores it', async () => {
    await stopAll(procs.splice(0));
    const lock = await holdLock(db.pool, 'LOCK TABLE feats IN ACCESS EXCLUSIVE MODE');
    try {
      assert.equal((await get('145')).status, 202);
      const doomed = worker();
      await waitFor('the worker to wait on the source', async () => {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'feats' AND NOT l.granted`,
        );
        return rows.length > 0;
      });
      doomed.kill('SIGKILL');
      await doomed.done;
    } finally {
      await lock.release();
    }
    const w = worker();
    const r = await get('145', '?wait=10s');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.source, 'late');
    // The worker logs the scoring after its commit (and NOTIFY): the answer can come first.
    await waitFor('the worker to log its scoring', () => scorings([w], '145') >= 1, 10_000);
    assert.equal(scorings([w], '145'), 1);
  });

  test('late scores equal a batch run of the date; a publish keeps late answers only for keys the new run lacks', async () => {
    const late = new Map<string, number>();
    for (const k of ['120', '121', '130', '140', '141', '142', '145']) late.set(k, (await get(k)).body.score!);
    // Key 121's row goes from the source: the next run lacks it.
    await db.pool.query(`DELETE FROM feats WHERE id = 121`);
    const run2 = await runJob(db, 'late', D);
    const stored = await storedRows(db, run2);
    for (const [k, score] of late) if (k !== '121') assertClose(score, stored.get(k)!.score!, 1e-6, `key ${k}`);
    await waitFor('the API to serve run 2', async () => (await get('1')).body.runId === run2);
    const has = await get('120');
    assert.equal(has.body.runId, run2);
    assert.equal(has.body.source, undefined, 'the new run has the key: its stored answer');
    const kept = await get('121');
    assert.equal(kept.status, 200, kept.text);
    assert.equal(kept.body.source, 'late');
    assert.equal(kept.body.runId, run2);
    assert.equal(kept.body.score, late.get('121'));
    // keepRuns 1: run 1 was dropped with its late rows.
    const left = await db.pool.query('SELECT count(*)::int AS n FROM prescore.late_predictions WHERE run_id = $1', [run1]);
    assert.equal(left.rows[0].n, 0);
  });

  test('on the PostgreSQL backend: one job for many asks, scored by a worker', async () => {
    // One API at a time from here: each checks on close that no connection of its name is left.
    await server!.close();
    server = undefined;
    // Rows that arrive after run 2.
    await seedFeatures(db.pool, 'feats', { rows: 2, features: 4, date: D, keyExpr: 'g + 159' });
    const pgEnv = { REDIS_URL: undefined };
    const pgBackend = queueBackend(resolveConfig({ DATABASE_URL: db.url }), db.url);
    const api = await startApi(db, { lookupTimeoutMs: 3000, late: { backend: pgBackend } });
    try {
      const many = await Promise.all(Array.from({ length: 20 }, () => get('160', '', api.base)));
      assert.ok(
        many.every((r) => r.status === 202),
        many.map((r) => r.text).join('\n'),
      );
      const queue = pgBackend.queue(LATE_QUEUE);
      try {
        assert.equal(await lateBacklog(queue), 1);
      } finally {
        await queue.close();
      }
      const w = worker(pgEnv);
      const r = await get('160', '?wait=10s', api.base);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.source, 'late');
      // The worker logs the scoring after its commit (and NOTIFY): the answer can come first.
      await waitFor('the worker to log its scoring', () => scorings([w], '160') >= 1, 10_000);
      assert.equal(scorings([w], '160'), 1);
    } finally {
      await api.close();
    }
  });

  test('a queue that is down answers 503 naming the queue; jobs validate wants a key filter path', async () => {
    const down = queueBackend(resolveConfig({ DATABASE_URL: db.url, REDIS_URL: 'redis://127.0.0.1:1' }), db.url);
    const api = await startApi(db, { lookupTimeoutMs: 800, late: { backend: down } });
    try {
      const r = await get('161', '', api.base);
      assert.equal(r.status, 503, r.text);
      assert.match(r.body.error!, /the queue \(Redis\) is unavailable/);
      assert.equal((await get('1', '', api.base)).status, 200, 'stored answers are not held up');
    } finally {
      await api.close();
    }
    writeJob(db, {
      ...jobSpec('late-bad', 'lin@champion', 'feats', F, { serving: { onMiss: 'enqueue' } }),
      source: { query: `SELECT id + 0 AS id, as_of, ${F.join(', ')} FROM feats`, key: 'id', partition: 'as_of', features: F },
    });
    const v = await cli(db, ['jobs', 'validate', 'late-bad']);
    assert.notEqual(v.code, 0);
    assert.match(v.stderr, /serving\.onMiss: "enqueue" needs a key filter path.*column "id"/s);
  });
});
