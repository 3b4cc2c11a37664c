import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel, multiclassModel } from './fixtures/models.js';
import { request, runJob, startApi, storedRows, type RunningApi } from './api-helpers.js';
import { sample } from './metrics-helpers.js';
import {
  assertClose,
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  sourceRows,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import type { ScoredPrediction } from '../src/bundle/read.js';

const DATE = '2026-11-20';
const F = featureNames(4);

type Body = { predictions: ScoredPrediction[]; error?: string };

function rowsFor(source: Map<string, number[]>, keys: string[]) {
  return keys.map((key) => ({ key, features: Object.fromEntries(F.map((f, i) => [f, source.get(key)![i]!])) }));
}

/** POST /v1/score/:job against runs published by `prescore run`: same model, same rows, same values. */
describe('POST /v1/score/:job', () => {
  let db: TestDb;
  let server: RunningApi;
  let linRun: string;
  let multiRun: string;
  let source: Map<string, number[]>;
  before(async () => {
    db = await createTestDb('api_score');
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'multi', 'multiclass');
    await seedFeatures(db.pool, 'feats', { rows: 200, features: 4, date: DATE });
    writeJob(db, jobSpec('lin-job', 'lin@champion', 'feats', F));
    writeJob(db, jobSpec('multi-job', 'multi@champion', 'feats', F, { output: multiclassModel().output }));
    writeJob(db, jobSpec('never-run', 'lin@champion', 'feats', F));
    linRun = await runJob(db, 'lin-job', DATE);
    multiRun = await runJob(db, 'multi-job', DATE);
    source = await sourceRows(db.pool, 'feats', 4, DATE);
    // A wide window, so requests sent together are coalesced even on a busy machine.
    server = await startApi(db, { score: { batchWindowMs: 20, modelTtlMs: 200 } });
  });
  after(async () => {
    await server?.close();
    await db?.drop();
  });

  const score = (job: string, body: unknown) => request<Body>(server.base, `/v1/score/${job}`, { body });

  test('scores equal what the batch run stored for the same rows, in request order', async () => {
    const keys = ['17', '3', '200', '1', '99', '3'];
    for (const [job, runId] of [
      ['lin-job', linRun],
      ['multi-job', multiRun],
    ] as const) {
      const stored = await storedRows(db, runId);
      const r = await score(job, { rows: rowsFor(source, keys) });
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type')!, /^application\/json/);
      assert.deepEqual(
        r.body.predictions.map((p) => p.key),
        keys,
      );
      for (const p of r.body.predictions) {
        const s = stored.get(p.key)!;
        assert.deepEqual(Object.keys(p), ['key', 'model', 'score', 'label', 'outputs']);
        assert.deepEqual(p.model, { name: job === 'lin-job' ? 'lin' : 'multi', version: 1 });
        assertClose(p.score!, s.score!, 1e-6, `${job} key ${p.key} score`);
        assert.equal(p.label, s.label);
        assert.equal(p.outputs?.length ?? null, s.outputs?.length ?? null);
        p.outputs?.forEach((v, i) => assertClose(v, s.outputs![i]!, 1e-6, `${job} key ${p.key} outputs[${i}]`));
      }
    }
  });

  test('the values are the model applied to the sent features (computed independently)', async () => {
    const m = multiclassModel();
    const r = await score('multi-job', { rows: [{ key: 'new-customer', features: { f0: 0.5, f1: -1.25, f2: 2, f3: 0 } }] });
    assert.equal(r.status, 200, r.text);
    const want = m.expect([0.5, -1.25, 2, 0]);
    const p = r.body.predictions[0]!;
    assertClose(p.score!, want.score!, 1e-6, 'score');
    assert.equal(p.label, want.label);
    want.outputs!.forEach((v, i) => assertClose(p.outputs![i]!, v, 1e-6, `outputs[${i}]`));
  });

  test('bad rows get 400 naming the row, its key and the feature', async () => {
    const good = { f0: 1, f1: 2, f2: 3, f3: 4 };
    const cases: [unknown, RegExp][] = [
      [
        {
          rows: [
            { key: 'a', features: good },
            { key: 'b', features: { f0: 1, f1: 2, f3: 4 } },
          ],
        },
        /^rows\[1\] \(key "b"\): feature "f2" is missing; the job's features are f0, f1, f2, f3$/,
      ],
      [
        { rows: [{ key: 'c', features: { ...good, tenure: 3 } }] },
        /^rows\[0\] \(key "c"\): unknown feature "tenure"; the job's features are f0, f1, f2, f3$/,
      ],
      [
        { rows: [{ key: 'd', features: { ...good, f1: '2' } }] },
        /^rows\[0\] \(key "d"\): feature "f1" must be a number \(got the string "2"\)$/,
      ],
      [{ rows: [{ key: 'e', features: { ...good, f3: null } }] }, /^rows\[0\] \(key "e"\): feature "f3" is null/],
      [
        { rows: [{ key: 'f', features: { ...good, f0: true } }] },
        /^rows\[0\] \(key "f"\): feature "f0" must be a number \(got boolean\)$/,
      ],
      [{ rows: [{ key: 7, features: good }] }, /^rows\[0\]\.key must be a string \(got number\)/],
      [{ rows: [{ key: '', features: good }] }, /^rows\[0\]\.key is empty$/],
      [{ rows: [{ key: 'g' }] }, /^rows\[0\] \(key "g"\): features must be an object/],
      [{ rows: [{ key: 'h', features: good, asOf: '2026-01-01' }] }, /^rows\[0\]: unknown field "asOf"/],
      [{ rows: [] }, /^rows must be an array of 1 to 1000 rows .* \(got 0 rows\)$/],
      [{ rows: Array.from({ length: 1001 }, (_, i) => ({ key: String(i), features: good })) }, /\(got 1001 rows\)$/],
      [{ keys: ['1'] }, /^unknown field "keys": the body has only "rows"$/],
      [[1, 2], /^the body must be a JSON object/],
    ];
    for (const [body, want] of cases) {
      const r = await score('lin-job', body);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
      assert.match(r.body.error!, want);
    }
    // A number beyond the double range parses as Infinity: refused, not scored.
    const inf = await request<Body>(server.base, '/v1/score/lin-job', {
      raw: '{"rows":[{"key":"i","features":{"f0":1e400,"f1":0,"f2":0,"f3":0}}]}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(inf.status, 400, inf.text);
    assert.match(inf.body.error!, /^rows\[0\] \(key "i"\): feature "f0" is not a finite number \(got Infinity\)$/);
    const big = await score('lin-job', { rows: [{ key: 'j', features: { ...good, f2: 1e39 } }] });
    assert.equal(big.status, 400);
    assert.match(big.body.error!, /feature "f2" = 1e\+39 overflows float32/);
  });

  test('unknown jobs, jobs that never ran and bad names are refused, each saying why', async () => {
    const body = { rows: [{ key: 'a', features: { f0: 1, f1: 2, f2: 3, f3: 4 } }] };
    const none = await score('no-such-job', body);
    assert.equal(none.status, 404);
    assert.match(none.body.error!, /job "no-such-job" has never run/);
    const never = await score('never-run', body);
    assert.equal(never.status, 404);
    assert.match(never.body.error!, /run it once \(prescore run never-run\)/);
    const bad = await score('Bad%20Name', body);
    assert.equal(bad.status, 400);
    assert.match(bad.body.error!, /is not a job name/);
    const get = await request(server.base, '/v1/score/lin-job');
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
  });

  test('fifty one-row requests sent together share a few inference calls', async () => {
    // A window wide enough that a loaded machine still delivers the fifty requests inside it.
    await server.close();
    server = await startApi(db, { score: { batchWindowMs: 250, modelTtlMs: 200 } });
    const metrics = async () => (await request(server.base, '/metrics')).text;
    const before = await metrics();
    const keys = Array.from({ length: 50 }, (_, i) => String(i + 1));
    const stored = await storedRows(db, linRun);
    const answers = await Promise.all(keys.map((k) => score('lin-job', { rows: rowsFor(source, [k]) })));
    for (const [i, r] of answers.entries()) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.predictions[0]!.key, keys[i]);
      assertClose(r.body.predictions[0]!.score!, stored.get(keys[i]!)!.score!, 1e-6, `key ${keys[i]}`);
    }
    const now = await metrics();
    const delta = (name: string) =>
      (sample(now, name, { prescore_job: 'lin-job' }) ?? 0) - (sample(before, name, { prescore_job: 'lin-job' }) ?? 0);
    assert.equal(delta('prescore_score_rows_total'), 50);
    const calls = delta('prescore_score_batches_total');
    assert.ok(calls >= 1 && calls <= 10, `50 requests took ${calls} inference calls`);
    await server.close();
    server = await startApi(db, { score: { batchWindowMs: 20, modelTtlMs: 200 } });
  });

  test('a promotion takes effect within the alias cache time: the current model scores', async () => {
    const v2 = linearModel(4, 9);
    const file = path.join(db.jobsDir, 'lin-v2.onnx');
    fs.writeFileSync(file, v2.bytes);
    const reg = await cli(db, ['models', 'register', 'lin', file]);
    assert.equal(reg.code, 0, reg.stderr);
    const promoted = await cli(db, ['models', 'promote', 'lin', '2', '--alias', 'champion']);
    assert.equal(promoted.code, 0, promoted.stderr);
    const x = [0.25, -0.5, 1.5, 2];
    const body = { rows: [{ key: 'k', features: { f0: x[0], f1: x[1], f2: x[2], f3: x[3] } }] };
    const p = await waitFor(
      'version 2 to score',
      async () => {
        const r = await score('lin-job', body);
        return r.body.predictions[0]!.model.version === 2 ? r.body.predictions[0] : undefined;
      },
      5000,
    );
    assertClose(p.score!, v2.expect(x).score!, 1e-6, 'v2 score');
  });
  test('with batching off (window 0) every request is an inference call of its own', async () => {
    // The API again, batching off (the helper allows one API of the test database at a time).
    await server.close();
    server = await startApi(db, { score: { batchWindowMs: 0 } });
    const keys = Array.from({ length: 20 }, (_, i) => String(i + 1));
    const answers = await Promise.all(keys.map((k) => score('lin-job', { rows: rowsFor(source, [k]) })));
    assert.ok(answers.every((r) => r.status === 200));
    const text = (await request(server.base, '/metrics')).text;
    assert.equal(sample(text, 'prescore_score_batches_total', { prescore_job: 'lin-job' }), 20);
  });
});
