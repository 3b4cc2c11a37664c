import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  MODELS_DIR,
  cli,
  createTestDb,
  registerModel,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-19';

/** Invariant 5: bad input exits non-zero naming the problem; what is published stays. */
describe('bad input is refused with a clear error and nothing is published', () => {
  let db: TestDb;
  let published: string;
  before(async () => {
    db = await createTestDb('errors');
    await seedFeatures(db.pool, 'feats', { rows: 1500, features: 4, date: DATE });
    await db.pool.query(`ALTER TABLE feats ADD COLUMN segment text DEFAULT 'a'`);
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('good', 'lin@champion', 'feats', featureNames(4)));
    const run = await cli(db, ['run', 'good', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    published = (JSON.parse(run.stdout) as { id: string }).id;
  });
  after(async () => db.drop());

  async function assertUntouched(): Promise<void> {
    const served = await servedPredictions(db.pool, 'good', DATE);
    assert.equal(served.runId, published);
    assert.equal(served.rows.size, 1500);
  }

  const cases: { name: string; spec?: Record<string, unknown>; args?: string[]; error: RegExp }[] = [
    {
      name: 'a missing table',
      spec: jobSpec('good', 'lin@champion', 'no_such_table', featureNames(4)),
      error: /source\.table: table no_such_table does not exist/,
    },
    {
      name: 'a missing column',
      spec: jobSpec('good', 'lin@champion', 'feats', ['f0', 'f1', 'f2', 'f9']),
      error: /source\.features\[3\]: column "f9" does not exist in feats/,
    },
    {
      name: 'a non-numeric column',
      spec: jobSpec('good', 'lin@champion', 'feats', ['f0', 'f1', 'f2', 'segment']),
      error:
        /source\.features\[3\]: column "segment" is text but model lin v1 input "x" takes float32: a text column feeds only a string input/,
    },
    {
      name: 'a feature count that does not match the model',
      spec: jobSpec('good', 'lin@champion', 'feats', ['f0', 'f1', 'f2']),
      error: /source\.features: lists 3 columns but model lin v1 takes 4 features per row/,
    },
    {
      name: 'an unknown alias',
      spec: jobSpec('good', 'lin@nosuchalias', 'feats', featureNames(4)),
      error: /model lin has no alias "nosuchalias": run prescore models promote lin <version> --alias nosuchalias/,
    },
    {
      name: 'a malformed date',
      args: ['run', 'good', '--date', '2026-02-30'],
      error: /date "2026-02-30" is not a calendar date in YYYY-MM-DD form/,
    },
    {
      name: 'a date with no rows',
      args: ['run', 'good', '--date', '2026-01-01'],
      error: /no rows in feats for as_of = 2026-01-01/,
    },
    { name: 'an unknown job', args: ['run', 'nope', '--date', DATE], error: /no job "nope"/ },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const original = fs.readFileSync(path.join(db.jobsDir, 'good.json'), 'utf8');
      if (c.spec) writeJob(db, c.spec);
      try {
        const r = await cli(db, c.args ?? ['run', 'good', '--date', DATE]);
        assert.notEqual(r.code, 0);
        assert.match(r.lastError, /^error: /);
        assert.match(r.stderr, c.error);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace without --verbose');
        await assertUntouched();
      } finally {
        fs.writeFileSync(path.join(db.jobsDir, 'good.json'), original);
      }
    });
  }

  test('a corrupt model file is refused at registration', async () => {
    const r = await cli(db, ['models', 'register', 'bad', path.join(MODELS_DIR, 'corrupt.onnx')]);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /^error: .*corrupt\.onnx is not a valid ONNX model that onnxruntime can load .*export it again/);
    const rows = await db.pool.query(`SELECT 1 FROM prescore.models WHERE name = 'bad'`);
    assert.equal(rows.rowCount, 0);
  });

  test('a ZipMap classifier whose rewrite would be ambiguous is refused with what to do', async () => {
    const r = await cli(db, ['models', 'register', 'zm', path.join(MODELS_DIR, 'zipmap-shared-input.onnx')]);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /output "output_probability": .* also feeds node .*export the classifier without ZipMap/);
  });

  test('a table name that smuggles SQL is refused, not executed', async () => {
    await db.pool.query('CREATE TABLE y (id int)');
    writeJob(db, jobSpec('inject', 'lin@champion', 'x; DROP TABLE y', featureNames(4)));
    const r = await cli(db, ['run', 'inject', '--date', DATE]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /source\.table "x; DROP TABLE y" is not a table name/);
    const still = await db.pool.query(`SELECT to_regclass('public.y') AS t`);
    assert.equal(still.rows[0].t, 'y');
    writeJob(db, jobSpec('inject2', 'lin@champion', 'feats', ['f0', 'f1', 'f2', 'f3"; DROP TABLE y; --']));
    const r2 = await cli(db, ['run', 'inject2', '--date', DATE]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /does not exist in feats/);
    assert.equal((await db.pool.query(`SELECT to_regclass('public.y') AS t`)).rows[0].t, 'y');
  });

  test('an unreachable Redis fails `run --queue` at once, before any run is planned', async () => {
    const runs = async () => (await db.pool.query('SELECT count(*)::int AS n FROM prescore.runs')).rows[0].n as number;
    const before = await runs();
    const started = Date.now();
    const r = await cli(db, ['run', 'good', '--date', DATE, '--queue'], { REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(r.code, 1);
    assert.match(
      r.lastError,
      /^error: cannot reach the queue \(Redis redis:\/\/127\.0\.0\.1:1\/0 .*ECONNREFUSED.*is REDIS_URL right and Redis up\?/,
    );
    assert.ok(Date.now() - started < 15_000);
    assert.equal(await runs(), before);
    await assertUntouched();
  });

  test('a wrong DATABASE_URL names the server, not the password', async () => {
    const r = await cli(db, ['runs', 'list'], { DATABASE_URL: 'postgresql://someone:s3cret@127.0.0.1:1/nowhere' });
    assert.equal(r.code, 1);
    assert.match(r.lastError, /^error: cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nowhere \(DATABASE_URL\): .*ECONNREFUSED/);
    assert.doesNotMatch(r.stderr, /s3cret/);
  });
});
