import assert from 'node:assert/strict';
import pg from 'pg';
import { after, before, describe, test } from 'node:test';
import { PUBLISH_CHANNEL } from '../src/db/sql/serving.js';
import { API_POOL_NAME, request, runJob, startApi, type RunningApi } from './api-helpers.js';
import { sample } from './metrics-helpers.js';
import {
  ADMIN_URL,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  writeJob,
  type TestDb,
  registerModel,
  waitFor,
} from './helpers.js';

const D0 = '2026-11-19';
const D1 = '2026-11-20';

/** /healthz, /readyz and /metrics. */
describe('health and metrics', () => {
  let db: TestDb;
  let server: RunningApi;
  let run1: string;
  before(async () => {
    db = await createTestDb('api_metrics');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: D1 });
    await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: D0 });
    writeJob(db, jobSpec('m-job', 'lin@champion', 'feats', featureNames(4)));
    run1 = await runJob(db, 'm-job', D1);
    server = await startApi(db);
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  const metrics = async () => {
    const r = await request(server.base, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    return r.text;
  };

  test('/healthz and /readyz answer 200 when all is well', async () => {
    const h = await request(server.base, '/healthz');
    assert.deepEqual([h.status, h.body], [200, { status: 'ok' }]);
    const r = await request(server.base, '/readyz');
    assert.deepEqual([r.status, r.body], [200, { ready: true }]);
  });

  test('requests by route and status, latency, hits and misses by job', async () => {
    for (const key of ['1', '2', '3']) assert.equal((await request(server.base, `/v1/predictions/m-job/${key}`)).status, 200);
    for (const key of ['x', 'y']) assert.equal((await request(server.base, `/v1/predictions/m-job/${key}`)).status, 404);
    const post = await request(server.base, '/v1/predictions/m-job', { body: { keys: ['4', 'z1', '5', 'z2', '6'] } });
    assert.equal(post.status, 200);
    assert.equal((await request(server.base, '/v1/predictions/m-job/1?asOf=nope')).status, 400);
    assert.equal((await request(server.base, '/v1/predictions/no-job/1')).status, 404);
    const text = await metrics();
    const get = { route: '/v1/predictions/:job/:key', method: 'GET' };
    assert.equal(sample(text, 'prescore_http_requests_total', { ...get, status: '200' }), 3);
    assert.equal(sample(text, 'prescore_http_requests_total', { ...get, status: '404' }), 3);
    assert.equal(sample(text, 'prescore_http_requests_total', { ...get, status: '400' }), 1);
    assert.equal(
      sample(text, 'prescore_http_requests_total', { route: '/v1/predictions/:job', method: 'POST', status: '200' }),
      1,
    );
    assert.equal(sample(text, 'prescore_http_request_duration_seconds_count', { ...get, status: '200' }), 3);
    assert.equal(sample(text, 'prescore_http_request_duration_seconds_bucket', { ...get, status: '200', le: '+Inf' }), 3);
    const seconds = sample(text, 'prescore_http_request_duration_seconds_sum', { ...get, status: '200' })!;
    assert.ok(seconds > 0 && seconds < 3, `latency sum ${seconds}`);
    assert.equal(sample(text, 'prescore_prediction_hits_total', { prescore_job: 'm-job' }), 6);
    assert.equal(sample(text, 'prescore_prediction_misses_total', { prescore_job: 'm-job' }), 4);
    // Unknown jobs are not labels: a client cannot grow the metric set at will.
    assert.equal(sample(text, 'prescore_prediction_misses_total', { prescore_job: 'no-job' }), undefined);
    assert.equal(sample(text, 'prescore_api_listener_up'), 1);
  });

  test("the served run's age follows the newest date's publish time", async () => {
    const publishedAt = async (runId: string) =>
      (
        await db.pool.query<{ t: Date }>('SELECT published_at AS t FROM prescore.runs WHERE id = $1', [runId])
      ).rows[0]!.t.getTime();
    const age = async () => sample(await metrics(), 'prescore_served_run_age_seconds', { prescore_job: 'm-job' })!;
    const now = (Date.now() - (await publishedAt(run1))) / 1000;
    assert.ok(Math.abs((await age()) - now) < 2, `age ${await age()} vs ${now}`);
    // The nightly run of D1 went stale two days ago...
    await db.pool.query(`UPDATE prescore.runs SET published_at = now() - interval '2 days' WHERE id = $1`, [run1]);
    // ...and an OLDER date published just now does not make the job look fresh.
    await runJob(db, 'm-job', D0);
    await waitFor('the age should be two days', async () => Math.abs((await age()) - 2 * 86400) < 5, 2000);
    // A new run of the newest date does.
    await db.pool.query('SELECT pg_notify($1, $2)', [PUBLISH_CHANNEL, 'not json: reload everything']);
    await runJob(db, 'm-job', D1);
    await waitFor('the age should be fresh again', async () => (await age()) < 5, 2000);
  });

  test('/readyz is 503 while a migration is missing', async () => {
    const { rows } = await db.pool.query<{ id: number; name: string }>(
      'SELECT id, name FROM prescore.migrations ORDER BY id DESC LIMIT 1',
    );
    const last = rows[0]!;
    await db.pool.query('DELETE FROM prescore.migrations WHERE id = $1', [last.id]);
    try {
      const r = await request<{ ready: boolean; error: string }>(server.base, '/readyz');
      assert.equal(r.status, 503);
      assert.equal(r.body.ready, false);
      assert.match(r.body.error, new RegExp(`migrations not applied: ${last.name}`));
      assert.equal((await request(server.base, '/healthz')).status, 200, 'the process is still up');
    } finally {
      await db.pool.query('INSERT INTO prescore.migrations (id, name) VALUES ($1, $2)', [last.id, last.name]);
    }
    assert.equal((await request(server.base, '/readyz')).status, 200);
  });

  test('database unreachable: /readyz 503, lookups 503 with JSON; both recover, and so does LISTEN', async () => {
    // From another database: a session cannot lock its own database out.
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    try {
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2`,
        [db.name, `${API_POOL_NAME}%`],
      );
      await waitFor('the listener should notice', async () => !server.api.listener.connected, 2000);
      const ready = await request<{ ready: boolean; error: string }>(server.base, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body.error, /^database unreachable: /);
      const get = await request<{ error: string }>(server.base, '/v1/predictions/m-job/1');
      assert.equal(get.status, 503, get.text);
      assert.deepEqual(get.body, { error: 'the database is unavailable; retry later' });
      assert.equal(sample(await metrics(), 'prescore_api_listener_up'), 0);
    } finally {
      await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    await waitFor('ready again', async () => (await request(server.base, '/readyz')).status === 200, 6000);
    assert.equal((await request(server.base, '/v1/predictions/m-job/1')).status, 200);
    await waitFor('LISTEN again', async () => server.api.listener.connected, 6000);
  });
});
