import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { sample, scrape, series, startWithMetrics } from './metrics-helpers.js';
import { REDIS_URL, obliterate, queuePrefix, stopAll, type Proc } from './queue.helpers.js';

const D1 = '2026-11-10';
const D2 = '2026-11-11';
const ROWS = 6000;
const CHUNK_ROWS = 1000;
const BAD = [10, 2500, 5999];

/** `prescore worker|scheduler --metrics-port`: what /metrics shows, /healthz, bad flags, a database that does not answer. */
describe('worker and scheduler metrics endpoint', () => {
  let db: TestDb;
  const procs: Proc[] = [];
  const prefix = queuePrefix('metrics_ep');
  const redis = { REDIS_URL, PRESCORE_QUEUE_PREFIX: prefix };
  let worker: { proc: Proc; url: string };
  before(async () => {
    db = await createTestDb('metrics_endpoint');
    await registerModel(db, 'lin', 'linear-float32');
    for (const date of [D1, D2])
      await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date, type: 'double precision' });
    await db.pool.query(`UPDATE feats SET f1 = NULL WHERE id = ANY ($1::int[]) AND as_of = $2`, [BAD, D2]);
    writeJob(db, jobSpec('ep-job', 'lin@champion', 'feats', featureNames(4), { chunkRows: CHUNK_ROWS }));
    worker = await startWithMetrics(db, ['worker', '--concurrency', '2'], redis);
    procs.push(worker.proc);
  });
  after(async () => {
    await stopAll(procs);
    await obliterate(prefix);
    await db.drop();
  });

  test('/healthz answers; other paths 404; /metrics is Prometheus text with process metrics', async () => {
    const h = await fetch(`${worker.url}/healthz`);
    assert.deepEqual([h.status, await h.json()], [200, { status: 'ok' }]);
    assert.equal((await fetch(`${worker.url}/nope`)).status, 404);
    assert.equal((await fetch(`${worker.url}/metrics`, { method: 'POST' })).status, 405);
    const m = await scrape(worker.url);
    assert.equal(m.status, 200);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    assert.ok(sample(m.text, 'prescore_process_cpu_seconds_total')! > 0);
    assert.equal(sample(m.text, 'prescore_cluster_read_ok'), 1);
    assert.equal(sample(m.text, 'prescore_queue_jobs', { queue: 'chunks', state: 'waiting' }), 0);
    assert.equal(sample(m.text, 'prescore_queue_jobs', { queue: 'late', state: 'waiting' }), 0);
  });

  test('a worker counts chunks, rows scored and rejected, inference latency; gauges show runs, publish age and drift', async () => {
    for (const date of [D1, D2]) {
      const r = await cli(db, ['run', 'ep-job', '--date', date, '--queue', '--json'], redis);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { status: string }).status, 'published');
    }
    const m = (await scrape(worker.url)).text;
    const job = { prescore_job: 'ep-job' };
    assert.equal(sample(m, 'prescore_chunks_total', { ...job, outcome: 'done' }), (2 * ROWS) / CHUNK_ROWS);
    assert.equal(sample(m, 'prescore_rows_scored_total', job), 2 * ROWS - BAD.length);
    assert.equal(sample(m, 'prescore_rows_rejected_total', job), BAD.length);
    const model = { model: 'lin', model_version: '1' };
    const batches = sample(m, 'prescore_inference_duration_seconds_count', model)!;
    assert.ok(batches >= (2 * ROWS) / CHUNK_ROWS, `one latency sample per batch at least (${batches})`);
    assert.equal(sample(m, 'prescore_inference_duration_seconds_bucket', { ...model, le: '+Inf' }), batches);
    assert.deepEqual(series(m, 'prescore_chunks_total'), ['{prescore_job="ep-job",outcome="done"}'], 'no label named job');

    // Cluster gauges: cached for 5 s, so wait for a reading taken after both runs.
    const text = await waitFor('the gauges to show both runs', async () => {
      const t = (await scrape(worker.url)).text;
      return sample(t, 'prescore_runs', { ...job, status: 'published' }) === 2 ? t : undefined;
    });
    const age = sample(text, 'prescore_last_publish_age_seconds', job)!;
    assert.ok(age >= 0 && age < 120, `last publish age ${age}`);
    const { rows } = await db.pool.query<{ feature: number; score: number }>(
      `SELECT (SELECT max((c->>'psi')::float8) FROM jsonb_array_elements(report->'columns') c WHERE c->>'kind' = 'feature') AS feature,
              (SELECT max((c->>'psi')::float8) FROM jsonb_array_elements(report->'columns') c WHERE c->>'column' = 'score') AS score
         FROM prescore.run_reports rr JOIN prescore.runs r ON r.id = rr.run_id WHERE r.date = $1`,
      [D2],
    );
    assert.ok(rows[0]!.feature !== null && rows[0]!.score !== null, 'the second run has a drift report against the first');
    assert.equal(sample(text, 'prescore_last_run_feature_psi_max', job), rows[0]!.feature);
    assert.equal(sample(text, 'prescore_last_run_score_psi', job), rows[0]!.score);
  });

  test('a chunk that fails the run counts as failed, and the run shows in prescore_runs as failed', async () => {
    writeJob(db, jobSpec('ep-bad', 'lin@champion', 'feats', featureNames(4), { chunkRows: CHUNK_ROWS, onBadRow: 'fail' }));
    const r = await cli(db, ['run', 'ep-bad', '--date', D2, '--queue', '--json'], redis);
    assert.notEqual(r.code, 0, 'a NULL feature with onBadRow "fail" fails the run');
    const text = await waitFor('the failure to be counted and read', async () => {
      const t = (await scrape(worker.url)).text;
      return sample(t, 'prescore_runs', { prescore_job: 'ep-bad', status: 'failed' }) === 1 ? t : undefined;
    });
    assert.ok(sample(text, 'prescore_chunks_total', { prescore_job: 'ep-bad', outcome: 'failed' })! >= 1);
    assert.equal(
      sample(text, 'prescore_chunks_total', { prescore_job: 'ep-bad', outcome: 'retried' }),
      undefined,
      'bad input is not retried',
    );
  });

  test('a database that does not answer: the last values, prescore_cluster_read_ok 0; then it recovers', async () => {
    await waitFor('a fresh reading', async () => sample((await scrape(worker.url)).text, 'prescore_cluster_read_ok') === 1);
    // The gauges' query waits on the runs table while another session holds it locked.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE prescore.runs IN ACCESS EXCLUSIVE MODE');
    try {
      const stale = await waitFor(
        'a scrape past the cache',
        async () => {
          const t = (await scrape(worker.url)).text;
          return sample(t, 'prescore_cluster_read_ok') === 0 ? t : undefined;
        },
        20_000,
        500,
      );
      assert.equal(sample(stale, 'prescore_runs', { prescore_job: 'ep-job', status: 'published' }), 2, 'the last values');
      assert.ok(sample(stale, 'prescore_last_publish_age_seconds', { prescore_job: 'ep-job' })! > 0);
      assert.ok(sample(stale, 'prescore_process_cpu_seconds_total')! > 0, 'process metrics still answer');
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    await waitFor('read ok again', async () => sample((await scrape(worker.url)).text, 'prescore_cluster_read_ok') === 1);
  });

  test('a scheduler serves the cluster gauges (PostgreSQL queue backend) and no worker counters', async () => {
    const scheduler = await startWithMetrics(db, ['scheduler'], { REDIS_URL: undefined });
    procs.push(scheduler.proc);
    const m = (await scrape(scheduler.url)).text;
    assert.equal(sample(m, 'prescore_cluster_read_ok'), 1);
    assert.equal(sample(m, 'prescore_runs', { prescore_job: 'ep-job', status: 'published' }), 2);
    assert.equal(sample(m, 'prescore_queue_jobs', { queue: 'finalize', state: 'active' }), 0);
    assert.doesNotMatch(m, /prescore_chunks_total/);
    assert.equal((await fetch(`${scheduler.url}/healthz`)).status, 200);
    scheduler.proc.kill('SIGTERM');
    assert.equal((await scheduler.proc.done).code, 0);
  });

  test('a bad --metrics-port exits 2 naming the flag; a port in use is an error too', async () => {
    for (const role of ['worker', 'scheduler']) {
      const r = await cli(db, [role, '--metrics-port', 'abc'], redis);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.lastError, /--metrics-port must be a whole number from 0 to 65535 \(got "abc"\)/);
    }
    const port = new URL(worker.url).port;
    const busy = await cli(db, ['worker', '--metrics-port', port], redis);
    assert.equal(busy.code, 2, busy.stderr);
    assert.match(
      busy.lastError,
      new RegExp(`--metrics-port ${port} --metrics-host 127\\.0\\.0\\.1: cannot listen: .*EADDRINUSE`),
    );
  });
});
