import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openBundle } from 'prescore';
import { BundleStore } from '../src/bundle/read.js';
import { buildBundleApi } from '../src/bundle/server.js';
import { silentLogger } from '../src/log.js';
import { labelEncoderModel, pipelineModel, typedInputsModel, type Row } from './fixtures/models.js';
import { MODELS_DIR, assertClose, cli, createTestDb, jobSpec, servedPredictions, writeJob, type TestDb } from './helpers.js';

const DATE = '2026-11-22';
const NULLS = '2026-11-23';

/**
 * Models as real exporters write them, end to end through `prescore run`: several named inputs
 * fed from the job's features (`inputs`), a text column into a string input (OneHotEncoder),
 * int32, bool and float16 inputs; every stored score against the expectation computed in
 * TypeScript; values an input's dtype cannot hold and NULL text follow onBadRow.
 */
describe('several inputs, text, int32/bool/float16', () => {
  let db: TestDb;
  const pipe = pipelineModel();
  const typed = typedInputsModel();
  before(async () => {
    db = await createTestDb('model_inputs');
    for (const [name, file] of [
      ['pipe', 'pipeline'],
      ['typed', 'typed-inputs'],
      ['lin', 'linear-float32'],
      ['tiers', 'label-encoder'],
    ]) {
      const r = await cli(db, ['models', 'register', name!, path.join(MODELS_DIR, `${file}.onnx`), '--alias', 'champion']);
      assert.equal(r.code, 0, r.stderr);
    }
    await db.pool.query(`CREATE TABLE pipe_feat (id bigint, as_of date, cat varchar(10), age real, f1 real, f2 real,
                           PRIMARY KEY (id, as_of))`);
    // Four categories, one the encoder does not know ("purple": all zeros); NULL cat on the second date.
    await db.pool.query(
      `INSERT INTO pipe_feat
       SELECT g, $1::date, (ARRAY['red', 'green', 'blue', 'purple'])[g % 4 + 1], (g % 90) * 0.5, sin(g), cos(g) * 2
         FROM generate_series(1, 1500) g
       UNION ALL
       SELECT g, $2::date, CASE WHEN g IN (7, 11) THEN NULL ELSE 'red' END, 1, 2, 3 FROM generate_series(1, 20) g`,
      [DATE, NULLS],
    );
    await db.pool.query(
      `CREATE TABLE typed_feat (id bigint PRIMARY KEY, as_of date, n1 integer, n2 numeric, flag boolean, h real)`,
    );
    await db.pool.query(
      `INSERT INTO typed_feat
       SELECT g, $1::date, g % 1000 - 500,
              CASE g WHEN 5 THEN 2.5 WHEN 6 THEN 3000000000 ELSE g % 7 END,
              g % 2 = 0,
              CASE g WHEN 8 THEN 70000 WHEN 9 THEN 65519 ELSE (g % 200 - 100) * 1.37 END
         FROM generate_series(1, 1200) g`,
      [DATE],
    );
  });
  after(async () => db.drop());

  async function rows(sql: string, date: string): Promise<Map<string, Row>> {
    const { rows: r } = await db.pool.query<Row & { id: string }>(sql, [date]);
    return new Map(r.map((x) => [String(x.id), x]));
  }

  test('a pipeline with a string categorical and per-column inputs: every score within 1e-6', async () => {
    writeJob(db, jobSpec('pipe-job', 'pipe@champion', 'pipe_feat', pipe.features, { inputs: pipe.inputs, maxRejectRate: 0.5 }));
    const run = await cli(db, ['run', 'pipe-job', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { status: string; rowsWritten: number; rowsRejected: number; chunks: number };
    assert.deepEqual([info.status, info.rowsWritten, info.rowsRejected], ['published', 1500, 0]);
    assert.ok(info.chunks >= 2);
    const source = await rows(`SELECT id, cat, age, f1, f2 FROM pipe_feat WHERE as_of = $1`, DATE);
    const served = await servedPredictions(db.pool, 'pipe-job', DATE);
    assert.equal(served.rows.size, 1500);
    for (const [key, row] of source) assertClose(served.rows.get(key)!.score!, pipe.expect(row), 1e-6, `key ${key}`);
  });

  test('NULL text: onBadRow reject names the column and key; fail stops the run naming them', async () => {
    const run = await cli(db, ['run', 'pipe-job', '--date', NULLS, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { id: string; rowsWritten: number; rowsRejected: number };
    assert.deepEqual([info.rowsWritten, info.rowsRejected], [18, 2]);
    const rejects = await db.pool.query<{ key: string; reason: string }>(
      'SELECT key, reason FROM prescore.rejects WHERE run_id = $1 ORDER BY key::int',
      [info.id],
    );
    assert.deepEqual(rejects.rows, [
      { key: '7', reason: 'NULL in column cat' },
      { key: '11', reason: 'NULL in column cat' },
    ]);
    const served = await servedPredictions(db.pool, 'pipe-job', NULLS);
    for (const [, got] of served.rows) assertClose(got.score!, pipe.expect({ cat: 'red', age: 1, f1: 2, f2: 3 }), 1e-6, 'score');

    writeJob(db, jobSpec('pipe-fail', 'pipe@champion', 'pipe_feat', pipe.features, { inputs: pipe.inputs, onBadRow: 'fail' }));
    const failed = await cli(db, ['run', 'pipe-fail', '--date', NULLS]);
    assert.equal(failed.code, 2);
    assert.match(failed.lastError, /key 7: NULL in column cat \(onBadRow is "fail"/);
  });

  test('int32, bool and float16 inputs: converted, and values they cannot hold are bad rows', async () => {
    writeJob(db, { ...jobSpec('typed-job', 'typed@champion', 'typed_feat', typed.features, { inputs: typed.inputs }) });
    const run = await cli(db, ['run', 'typed-job', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { id: string; rowsWritten: number; rowsRejected: number };
    assert.deepEqual([info.rowsWritten, info.rowsRejected], [1197, 3]);
    const rejects = await db.pool.query<{ key: string; reason: string }>(
      'SELECT key, reason FROM prescore.rejects WHERE run_id = $1 ORDER BY key::int',
      [info.id],
    );
    assert.deepEqual(rejects.rows, [
      { key: '5', reason: 'value 2.5 in column n2 is not an integer (the model takes int32)' },
      { key: '6', reason: 'value 3000000000 in column n2 is out of range for int32 (-2147483648 to 2147483647)' },
      { key: '8', reason: 'h = 70000 overflows float16 (largest 65504)' },
    ]);
    const source = await rows(
      `SELECT id, n1, n2::float8 AS n2, flag, h FROM typed_feat WHERE as_of = $1 AND id NOT IN (5, 6, 8)`,
      DATE,
    );
    const served = await servedPredictions(db.pool, 'typed-job', DATE);
    assert.equal(served.rows.size, source.size);
    // float16: the expectation rounds h to float16 itself, so only float32 arithmetic differs (1e-5 relative).
    for (const [key, row] of source) {
      const want = typed.expect(row);
      assertClose(served.rows.get(key)!.score!, want, 1e-5 * Math.max(1, Math.abs(want)), `key ${key}`);
    }
    assert.ok(served.rows.has('9'), '65519 rounds to 65504 in float16: a value, not an overflow');
  });

  test('text only, through a LabelEncoder (a rank-1 string input, no numeric feature), without inputs', async () => {
    const model = labelEncoderModel();
    await db.pool.query(`CREATE TABLE tier_feat (id text PRIMARY KEY, as_of date, tier text)`);
    await db.pool.query(
      `INSERT INTO tier_feat SELECT 'k' || g, $1::date, (ARRAY['bronze', 'silver', 'gold', 'Gold', 'plätinum'])[g % 5 + 1]
         FROM generate_series(1, 1100) g`,
      [DATE],
    );
    writeJob(db, jobSpec('tier-job', 'tiers@champion', 'tier_feat', model.features));
    const run = await cli(db, ['run', 'tier-job', '--date', DATE]);
    assert.equal(run.code, 0, run.stderr);
    const source = await rows(`SELECT id, tier FROM tier_feat WHERE as_of = $1`, DATE);
    const served = await servedPredictions(db.pool, 'tier-job', DATE);
    assert.equal(served.rows.size, 1100);
    for (const [key, row] of source) assert.equal(served.rows.get(key)!.score, model.expect(row), `key ${key}`);
  });

  test('a challenger with the same inputs is scored as that model alone (within 1e-5); one without them is refused', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-inputs-'));
    const other = pipelineModel(11);
    fs.writeFileSync(path.join(tmp, 'pipe2.onnx'), other.bytes);
    const reg = await cli(db, ['models', 'register', 'pipe', path.join(tmp, 'pipe2.onnx'), '--alias', 'challenger']);
    assert.equal(reg.code, 0, reg.stderr);
    fs.rmSync(tmp, { recursive: true, force: true });
    writeJob(
      db,
      jobSpec('pipe-ch', 'pipe@champion', 'pipe_feat', pipe.features, { inputs: pipe.inputs, challengers: ['pipe@challenger'] }),
    );
    const run = await cli(db, ['run', 'pipe-ch', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const id = (JSON.parse(run.stdout) as { id: string }).id;
    const source = await rows(`SELECT id, cat, age, f1, f2 FROM pipe_feat WHERE as_of = $1`, DATE);
    const { rows: stored } = await db.pool.query<{ key: string; score: number }>(
      'SELECT key, score FROM prescore.challenger_predictions WHERE run_id = $1 AND slot = 1',
      [id],
    );
    assert.equal(stored.length, 1500);
    for (const r of stored) assertClose(r.score, other.expect(source.get(r.key)!), 1e-5, `challenger key ${r.key}`);
    const served = await servedPredictions(db.pool, 'pipe-ch', DATE);
    for (const [key, row] of source) assertClose(served.rows.get(key)!.score!, pipe.expect(row), 1e-6, `champion key ${key}`);

    writeJob(
      db,
      jobSpec('pipe-ch-bad', 'pipe@champion', 'pipe_feat', pipe.features, { inputs: pipe.inputs, challengers: ['lin@1'] }),
    );
    const bad = await cli(db, ['jobs', 'validate', 'pipe-ch-bad']);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /challengers\[0\]: model lin v1 has inputs x:float32 but the champion has cat:string, age:float32, num:float32/,
    );
    fs.rmSync(path.join(db.jobsDir, 'pipe-ch-bad.json'));
  });

  test('incremental over text features: carried when nothing changed, a full run when the inputs mapping changes', async () => {
    const spec = (inputs: Record<string, string[]>) =>
      jobSpec('pipe-inc', 'pipe@champion', 'pipe_feat', pipe.features, { inputs, incremental: { mode: 'hash' } });
    writeJob(db, spec(pipe.inputs));
    const runOnce = async () => {
      const r = await cli(db, ['run', 'pipe-inc', '--date', DATE, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { rowsCarried: number; incremental: { full: boolean; reason: string | null } };
    };
    assert.equal((await runOnce()).incremental.full, true);
    const again = await runOnce();
    assert.deepEqual([again.incremental.full, again.rowsCarried], [false, 1500]);
    // The same columns, the same model, another mapping: num takes f2, f1. Every score changes.
    writeJob(db, spec({ ...pipe.inputs, num: ['f2', 'f1'] }));
    const swapped = await runOnce();
    assert.equal(swapped.incremental.full, true, 'a changed inputs mapping rescores every row');
    assert.match(swapped.incremental.reason ?? '', /^inputs changed since run \d+/);
    assert.equal(swapped.rowsCarried, 0);
    const served = await servedPredictions(db.pool, 'pipe-inc', DATE);
    const source = await rows(`SELECT id, cat, age, f1, f2 FROM pipe_feat WHERE as_of = $1`, DATE);
    for (const [key, row] of source) {
      assertClose(served.rows.get(key)!.score!, pipe.expect({ ...row, f1: row.f2!, f2: row.f1! }), 1e-6, `key ${key}`);
    }
  });

  test('a bundle of a job with inputs: lookups answer; scoring sent features is refused, saying why', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-inputs-')), 'bundle');
    const exp = await cli(db, ['export', 'pipe-job', '--date', DATE, '--out', dir]);
    assert.equal(exp.code, 0, exp.stderr);
    assert.match(exp.stderr, /pipe-job maps its features to several or non-float inputs .*score\(\) and POST \/v1\/score refuse/);
    const bundle = await openBundle(dir);
    try {
      const served = await servedPredictions(db.pool, 'pipe-job', DATE);
      assert.equal(bundle.get('42')!.score, served.rows.get('42')!.score);
      await assert.rejects(
        bundle.score([{ key: 'n', features: { age: 1, f1: 2, f2: 3 } }]),
        /job pipe-job maps its features to several or non-float inputs .*openBundle\(\)\.score\(\) scores only single-input/,
      );
    } finally {
      await bundle.close();
    }
    const api = buildBundleApi(BundleStore.open(dir), silentLogger);
    try {
      const base = await api.app.listen({ port: 0, host: '127.0.0.1' });
      const res = await fetch(`${base}/v1/score/pipe-job`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rows: [{ key: 'n', features: { cat: 1, age: 1, f1: 2, f2: 3 } }] }),
      });
      assert.equal(res.status, 409);
      assert.match(
        ((await res.json()) as { error: string }).error,
        /job pipe-job maps its features .*POST \/v1\/score scores only/,
      );
    } finally {
      await api.close();
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  test('jobs validate refuses mappings that do not fit, naming the input and the fix', async () => {
    for (const f of ['pipe-job', 'pipe-fail', 'typed-job', 'tier-job', 'pipe-ch', 'pipe-inc'])
      writeJob(db, { name: f, model: 'nope@1', source: {} });
    const bad = (name: string, model: string, features: string[], extra: Record<string, unknown>) =>
      writeJob(db, jobSpec(name, model, 'pipe_feat', features, extra));
    bad('no-inputs', 'pipe@champion', pipe.features, {});
    bad('unmapped', 'pipe@champion', pipe.features, { inputs: { cat: ['cat'], age: ['age'], zzz: ['f1', 'f2'] } });
    bad('text-to-num', 'pipe@champion', pipe.features, { inputs: { cat: ['cat'], age: ['age'], num: ['cat', 'f2'] } });
    bad('num-to-text', 'pipe@champion', pipe.features, { inputs: { cat: ['age'], age: ['f1'], num: ['f2', 'f1'] } });
    bad('not-a-feature', 'pipe@champion', ['cat', 'age', 'f1'], { inputs: { cat: ['cat'], age: ['age'], num: ['f1', 'f2'] } });
    bad('width', 'pipe@champion', pipe.features, { inputs: { cat: ['cat'], age: ['age', 'f1'], num: ['f2'] } });
    bad('text-plain', 'lin@champion', ['cat', 'age', 'f1', 'f2'], {});
    bad('on-miss', 'pipe@champion', pipe.features, { inputs: pipe.inputs, serving: { onMiss: 'compute' } });
    const r = await cli(db, ['jobs', 'validate']);
    assert.equal(r.code, 2);
    const want = [
      /job no-inputs .*model: model pipe v1 has 3 inputs \(cat, age, num\): map the job's features to them, e.g. "inputs": \{"cat": \[\.\.\.\], "age": \[\.\.\.\]\}/,
      /inputs\.zzz: model pipe v1 has no input "zzz" \(its inputs: cat, age, num\)/,
      /inputs: model pipe v1 input "num" is not mapped: add "num": \[<columns>\] to inputs/,
      /inputs\.num\[0\]: column "cat" is character varying\(10\) but model pipe v1 input "num" takes float32: feed it a numeric column, or encode the text in the graph/,
      /inputs\.cat\[0\]: column "age" is real but model pipe v1 input "cat" takes strings: feed it a text column, or cast it in a source query \("age"::text AS age\)/,
      /source\.features\[0\]: column "cat" feeds no model input: list it in inputs, or remove it/,
      /inputs\.num\[1\]: column "f2" is not in source\.features: add it there/,
      /inputs\.age: lists 2 column\(s\) but model pipe v1 input "age" takes 1 per row/,
      /job on-miss .*serving\.onMiss: "compute" scores a missing key as one plain \[batch, features\] tensor, which model pipe v1 .* does not take: set it to "off"/,
      /job text-plain .*source\.features\[0\]: column "cat" is character varying\(10\) but model lin v1 input "x" takes float32: a text column feeds only a string input/,
    ];
    for (const w of want) assert.match(r.stderr, w);
  });

  test('an input type prescore cannot feed is refused at registration with the fix', async () => {
    const r = await cli(db, ['models', 'register', 'u64', path.join(MODELS_DIR, 'uint64.onnx')]);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /uint64\.onnx: input "x" is uint64, which prescore cannot feed .*give the model an int64 input/);
  });
});
