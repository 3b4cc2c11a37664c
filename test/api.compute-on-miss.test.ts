import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel } from './fixtures/models.js';
import { request, runJob, startApi, storedRows, type Item, type RunningApi } from './api-helpers.js';
import { sample } from './metrics-helpers.js';
import {
  assertClose,
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  writeJob,
  type TestDb,
} from './helpers.js';

const D = '2026-11-20';
const F = featureNames(4);
type Computed = Item & { source?: string };
type Batch = { predictions: Computed[]; missing: string[]; notComputed?: string[] };

/**
 * serving.onMiss "compute": a key the served run lacks is read from the source for the run's
 * date and scored with the run's pinned model, answering what a batch run would have stored.
 */
describe('compute on miss', () => {
  let db: TestDb;
  let server: RunningApi;
  let run1: string;
  const late = Array.from({ length: 50 }, (_, i) => String(101 + i));

  before(async () => {
    db = await createTestDb('api_miss');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 100, features: 4, date: D });
    await db.pool.query('UPDATE feats SET f1 = NULL WHERE id = 99'); // the run rejects it
    const serving = { serving: { onMiss: 'compute' } };
    writeJob(db, jobSpec('miss', 'lin@champion', 'feats', F, serving));
    const q = `SELECT id, as_of, ${F.join(', ')} FROM feats`;
    writeJob(db, {
      ...jobSpec('miss-q', 'lin@champion', 'feats', F, serving),
      source: { query: q, key: 'id', partition: 'as_of', features: F },
    });
    run1 = await runJob(db, 'miss', D);
    await runJob(db, 'miss-q', D);
    // Rows that arrive after the night's run: keys 101..150, then one the model would reject.
    await seedFeatures(db.pool, 'feats', { rows: 50, features: 4, date: D, keyExpr: 'g + 100' });
    await db.pool.query(`INSERT INTO feats VALUES (151, $1, 1, 'NaN', 0, 0)`, [D]);
    server = await startApi(db, { lookupTimeoutMs: 1500, miss: { maxKeys: 40 } });
  });
  after(async () => {
    await server?.close();
    await db?.drop();
  });

  const get = (job: string, key: string) =>
    request<Computed & { error?: string; rejected?: string }>(server.base, `/v1/predictions/${job}/${key}`);
  const metrics = async () => (await request(server.base, '/metrics')).text;

  test('a key after the run is computed with the run and model pinned; stored answers are unchanged', async () => {
    const stored = await get('miss', '5');
    assert.equal(stored.status, 200);
    assert.deepEqual(Object.keys(stored.body), ['job', 'key', 'asOf', 'runId', 'model', 'score', 'label', 'outputs']);
    const r = await get('miss', '120');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.body), ['job', 'key', 'asOf', 'runId', 'model', 'score', 'label', 'outputs', 'source']);
    assert.equal(r.body.source, 'computed');
    assert.equal(r.body.runId, run1);
    assert.equal(r.body.asOf, D);
    assert.deepEqual(r.body.model, { name: 'lin', version: 1 });
    // A query source computes the same.
    const q = await get('miss-q', '120');
    assert.equal(q.status, 200, q.text);
    assert.equal(q.body.score, r.body.score);
  });

  test('rejected, absent and impossible keys answer 404 as today, with the reason where there is one', async () => {
    const inRun = await get('miss', '99');
    assert.equal(inRun.status, 404);
    assert.equal(inRun.body.rejected, 'NULL in column f1');
    const computed = await get('miss', '151');
    assert.equal(computed.status, 404);
    assert.equal(computed.body.rejected, 'NaN in column f1');
    for (const key of ['9999', 'abc', '99999999999999999999', '-0']) {
      const r = await get('miss', key);
      assert.equal(r.status, 404, `${key}: ${r.text}`);
      assert.equal(r.body.rejected, undefined);
      assert.match(r.body.error!, new RegExp(`no prediction for key "${key}"`));
    }
  });

  test('concurrent misses share source queries; a POST computes its missing keys in one query, up to the limit', async () => {
    const count = async () => sample(await metrics(), 'prescore_api_miss_query_keys_count', { prescore_job: 'miss' }) ?? 0;
    let before = await count();
    const answers = await Promise.all(late.map((k) => get('miss', k)));
    assert.ok(answers.every((a) => a.status === 200 && a.body.source === 'computed'));
    const queries = (await count()) - before;
    // Two source queries at a time: the others wait and share the next one (fewer on a loaded machine).
    assert.ok(queries >= 1 && queries <= 40, `50 concurrent misses took ${queries} source queries`);

    before = await count();
    const keys = ['1', ...late, '9999'];
    const r = await request<Batch>(server.base, '/v1/predictions/miss', { body: { keys } });
    assert.equal(r.status, 200, r.text);
    assert.equal((await count()) - before, 1);
    assert.deepEqual(
      r.body.predictions.map((p) => p.key),
      ['1', ...late.slice(0, 40)],
    );
    assert.equal(r.body.predictions[0]!.source, undefined);
    assert.ok(r.body.predictions.slice(1).every((p) => p.source === 'computed'));
    assert.deepEqual(r.body.notComputed, [...late.slice(40), '9999']);
    assert.deepEqual(r.body.missing, [...late.slice(40), '9999']);
    const text = await metrics();
    assert.ok(sample(text, 'prescore_prediction_computed_total', { prescore_job: 'miss' })! >= 91);
  });

  test('computed answers equal what a fresh batch run of the date stores, and ignore a promotion after the run', async () => {
    const computed = new Map((await Promise.all(late.map((k) => get('miss', k)))).map((a) => [a.body.key, a.body.score!]));
    // A new model version takes the alias: the served run still pins version 1.
    const v2 = path.join(db.jobsDir, 'lin-v2.onnx');
    fs.writeFileSync(v2, linearModel(4, 7).bytes);
    assert.equal((await cli(db, ['models', 'register', 'lin', v2, '--alias', 'champion'])).code, 0);
    const after = await get('miss', '130');
    assert.deepEqual(after.body.model, { name: 'lin', version: 1 });
    assert.equal(after.body.score, computed.get('130'));
    // The oracle: a batch run of the same date with the same version.
    writeJob(db, jobSpec('check-v1', 'lin@1', 'feats', F));
    const stored = await storedRows(db, await runJob(db, 'check-v1', D));
    for (const [key, score] of computed) assertClose(score, stored.get(key)!.score!, 1e-6, `key ${key}`);
  });

  test('a source that hangs (a lock) answers 503 within the lookup timeout, and computing resumes after', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('LOCK TABLE feats IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const r = await get('miss', '140');
      assert.equal(r.status, 503, r.text);
      assert.ok(Date.now() - started < 5000);
      assert.equal((await get('miss', '5')).status, 200, 'stored answers are not held up');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    const r = await get('miss', '140');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.source, 'computed');
  });

  test('jobs validate refuses onMiss on a query source whose key is computed, naming serving.onMiss and the fix', async () => {
    writeJob(db, {
      ...jobSpec('miss-bad', 'lin@champion', 'feats', F, { serving: { onMiss: 'compute' } }),
      source: { query: `SELECT id + 0 AS id, as_of, ${F.join(', ')} FROM feats`, key: 'id', partition: 'as_of', features: F },
    });
    const r = await cli(db, ['jobs', 'validate', 'miss-bad']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /serving\.onMiss: "compute" needs a key filter path.*column "id".*source\.table/s);
    writeJob(db, jobSpec('miss-typo', 'lin@champion', 'feats', F, { serving: { onMiss: 'always' } }));
    const t = await cli(db, ['jobs', 'validate', 'miss-typo']);
    assert.notEqual(t.code, 0);
    assert.match(t.stderr, /serving\.onMiss/);
    assert.equal((await cli(db, ['jobs', 'validate', 'miss-q'])).code, 0);
  });
});
