import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel, logModel } from './fixtures/models.js';
import {
  assertClose,
  cli,
  createTestDb,
  featureNames,
  holdLock,
  jobSpec,
  registerModel,
  seedFeatures,
  sourceRows,
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-12-01';
const KILL_DATE = '2026-12-02';
const ROWS = 3000;
const KILL_ROWS = 20_000;
const BAD_KEYS = [ROWS + 1, ROWS + 2];

interface Stored {
  slot: number;
  key: string;
  score: number;
}

/** Every stored prediction of a run, champion (slot 0) and challengers, through the partitioned parents. */
async function storedRows(db: TestDb, runId: string): Promise<Stored[]> {
  const { rows } = await db.pool.query<Stored>(
    `SELECT 0 AS slot, key, score FROM prescore.predictions WHERE run_id = $1
     UNION ALL SELECT slot, key, score FROM prescore.challenger_predictions WHERE run_id = $1`,
    [runId],
  );
  return rows;
}

/**
 * Challengers scored in the champion's pass: the same rows read once, every model's
 * predictions in the chunk's transaction, published together; bad jobs refused by validate.
 */
describe('challengers', () => {
  let db: TestDb;
  const second = linearModel(4, 9);
  before(async () => {
    db = await createTestDb('challengers');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    await seedFeatures(db.pool, 'feats', { rows: KILL_ROWS, features: 4, date: KILL_DATE, salt: 1 });
    // Rows with a bad feature: rejected once, for every model.
    for (const k of BAD_KEYS) await db.pool.query(`INSERT INTO feats VALUES ($1, $2, NULL, 1, 1, 1)`, [k, DATE]);
    await registerModel(db, 'lin', 'linear-float32'); // v1, champion
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-chall-'));
    fs.writeFileSync(path.join(dir, 'lin2.onnx'), second.bytes);
    const r = await cli(db, ['models', 'register', 'lin', path.join(dir, 'lin2.onnx'), '--alias', 'challenger']); // v2
    assert.equal(r.code, 0, r.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
    await registerModel(db, 'log', 'log'); // NaN / -Infinity for x0 <= 0: challenger rejects
    await registerModel(db, 'mlp', 'mlp');
    await registerModel(db, 'lin64', 'linear-float64');
    await registerModel(db, 'multi', 'multiclass');
    writeJob(
      db,
      jobSpec('ch', 'lin@champion', 'feats', featureNames(4), { challengers: ['lin@challenger', 'log@1'], keepRuns: 1 }),
    );
  });
  after(async () => db.drop());

  test('jobs validate refuses bad challengers, naming the job, the field and the fix', async () => {
    const cases: [string, unknown, RegExp[]][] = [
      ['ch-many', ['lin@2', 'log@1', 'lin@challenger', 'multi@1'], [/challengers: lists 4 models; at most 3 challengers/]],
      [
        'ch-dup',
        ['log@1', 'log@1'],
        [/challengers\[1\]: "log@1" is listed twice \(also challengers\[0\]\): list each challenger once/],
      ],
      ['ch-self', ['lin@champion'], [/challengers\[0\]: "lin@champion" is the champion \(model\).*remove it/]],
      ['ch-syntax', ['lin'], [/challengers\[0\]: must be name@alias or name@version/]],
      [
        'ch-catalog',
        ['lin@1', 'nope@1', 'lin@nope'],
        [
          /challengers\[0\]: "lin@1" is lin v1, the same model as the champion \(model "lin@champion"\)/,
          /challengers\[1\]: model "nope" is not registered: run prescore models register nope/,
          /challengers\[2\]: model lin has no alias "nope": run prescore models promote lin <version> --alias nope/,
        ],
      ],
      [
        'ch-fit',
        ['lin64@1', 'multi@1', 'mlp@1'],
        [
          /challengers\[2\]: model mlp v1 takes 32 features per row but source.features lists 4: .*same 4, in the same order/,
          /challengers\[0\]: model lin64 v1 takes float64 input but the champion takes float32: .*export the challenger with a float32 input/,
          /challengers\[1\]: model multi v1: output: the model has outputs label, probabilities: map them/,
        ],
      ],
    ];
    for (const [name, challengers, expected] of cases) {
      writeJob(db, jobSpec(name, 'lin@champion', 'feats', featureNames(4), { challengers }));
      const r = await cli(db, ['jobs', 'validate', name]);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      // Schema problems name the job's file, catalog problems the job and its file.
      assert.match(r.stderr, new RegExp(`${name}\\.json`), name);
      if (name === 'ch-catalog' || name === 'ch-fit') assert.match(r.stderr, new RegExp(`job ${name} \\(`), name);
      for (const e of expected) assert.match(r.stderr, e, name);
      fs.rmSync(path.join(db.jobsDir, `${name}.json`));
    }
    const ok = await cli(db, ['jobs', 'validate', 'ch']);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('every challenger score equals that model alone; rejects per model; published and dropped together', async () => {
    const r = await cli(db, ['run', 'ch', '--date', DATE, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const runId = (JSON.parse(r.stdout) as { id: string }).id;
    const source = await sourceRows(db.pool, 'feats', 4, DATE);
    const stored = await storedRows(db, runId);
    const slots = [0, 1, 2].map((slot) => new Map(stored.filter((s) => s.slot === slot).map((s) => [s.key, s.score])));
    const models = [linearModel(), second, logModel()];
    const counts = [0, 0, 0];
    for (const [key, x] of source) {
      for (const [slot, model] of models.entries()) {
        const got = slots[slot]!.get(key);
        const bad = BAD_KEYS.map(String).includes(key);
        const want = bad ? undefined : model.expect(x).score!;
        if (want === undefined || !Number.isFinite(want)) {
          assert.equal(got, undefined, `slot ${slot} key ${key} must not be stored`);
          continue;
        }
        assert.ok(got !== undefined, `slot ${slot} key ${key} missing`);
        assertClose(got, want, 1e-5, `slot ${slot} key ${key}`);
        counts[slot]!++;
      }
    }
    assert.equal(counts[0], ROWS);
    assert.equal(counts[1], ROWS);
    assert.ok(counts[2]! > ROWS / 4 && counts[2]! < ROWS, `log scored ${counts[2]}`);
    // Bad features: once in rejects, for every model; the log model's NaNs: its own rejects.
    const rejects = await db.pool.query('SELECT key FROM prescore.rejects WHERE run_id = $1 ORDER BY key', [runId]);
    assert.deepEqual(
      rejects.rows.map((x) => x.key),
      BAD_KEYS.map(String),
    );
    const own = await db.pool.query<{ slot: number; n: number }>(
      'SELECT slot, count(*)::int AS n FROM prescore.challenger_rejects WHERE run_id = $1 GROUP BY slot',
      [runId],
    );
    assert.deepEqual(own.rows, [{ slot: 2, n: ROWS - counts[2]! }]);
    // runs show lists the pinned models and their counts.
    const show = await cli(db, ['runs', 'show', runId, '--json']);
    const info = JSON.parse(show.stdout) as { models: Record<string, unknown>[]; rowsRead: number };
    assert.equal(info.rowsRead, ROWS + BAD_KEYS.length);
    assert.deepEqual(
      info.models.map((m) => [m.slot, m.role, m.ref, m.name, m.version, m.rowsWritten, m.rowsRejected]),
      [
        [0, 'champion', 'lin@champion', 'lin', 1, ROWS, 0],
        [1, 'challenger', 'lin@challenger', 'lin', 2, ROWS, 0],
        [2, 'challenger', 'log@1', 'log', 1, counts[2], ROWS - counts[2]!],
      ],
    );
    const text = await cli(db, ['runs', 'show', runId]);
    assert.match(text.stdout, /1\s+challenger\s+lin@challenger\s+lin v2\s+3,000\s+0/);
    assert.match(text.stdout, /2 rows with bad features are rejected for every model/);

    // Promoting the alias changes the next run, never this one; keepRuns 1 drops both tables of the old run.
    assert.equal((await cli(db, ['models', 'promote', 'lin', '1', '--alias', 'challenger'])).code, 0);
    const pinned = await db.pool.query('SELECT model_version FROM prescore.run_models WHERE run_id = $1 AND slot = 1', [runId]);
    assert.equal(pinned.rows[0].model_version, 2);
    assert.equal((await cli(db, ['models', 'promote', 'lin', '2', '--alias', 'challenger'])).code, 0);
    const again = await cli(db, ['run', 'ch', '--date', DATE, '--json']);
    assert.equal(again.code, 0, again.stderr);
    const tables = await db.pool.query(
      `SELECT to_regclass('prescore.predictions_r' || $1::text) AS p, to_regclass('prescore.challenger_predictions_r' || $1::text) AS c,
              (SELECT count(*)::int FROM prescore.challenger_rejects WHERE run_id = $1::bigint) AS r`,
      [runId],
    );
    assert.deepEqual(tables.rows[0], { p: null, c: null, r: 0 });
  });

  test('export of a run with challengers: the champion only, and the command says so', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-chall-'));
    try {
      const csv = await cli(db, ['export', 'ch', '--date', DATE, '--out', path.join(dir, 'ch.csv')]);
      assert.equal(csv.code, 0, csv.stderr);
      const note =
        /note: the run of job ch also scored lin@challenger, log@1: the (csv file|bundle) holds the champion's predictions only/;
      assert.match(csv.stderr, note);
      const lines = fs.readFileSync(path.join(dir, 'ch.csv'), 'utf8').trim().split('\n');
      assert.equal(lines.length, 1 + ROWS, 'one row per key: no challenger rows');
      const source = await sourceRows(db.pool, 'feats', 4, DATE);
      const [key, score] = lines[1]!.split(',');
      assertClose(Number(score), linearModel().expect(source.get(key!)!).score!, 1e-5, `champion score of key ${key}`);
      const bundle = await cli(db, ['export', 'ch', '--date', DATE, '--out', path.join(dir, 'bundle')]);
      assert.equal(bundle.code, 0, bundle.stderr);
      assert.match(bundle.stderr, note);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('kill -9 in the middle of a run, then resume: each (key, slot) once, published together', async () => {
    const child = startCli(db, ['run', 'ch', '--date', KILL_DATE], { PRESCORE_CHUNK_CONCURRENCY: '2' });
    const runId = await waitFor('two chunks done', async () => {
      const { rows } = await db.pool.query(
        `SELECT r.id::text FROM prescore.runs r JOIN prescore.run_chunks c ON c.run_id = r.id
          WHERE r.job = 'ch' AND r.date = $1 AND c.status = 'done' GROUP BY r.id HAVING count(*) >= 2`,
        [KILL_DATE],
      );
      return rows[0]?.id as string | undefined;
    });
    // Chunks in flight wait on this lock (their chunk row or done-marker): killed mid-chunk.
    const lock = await holdLock(db.pool, 'LOCK TABLE prescore.run_chunks IN EXCLUSIVE MODE');
    try {
      child.kill('SIGKILL');
      assert.equal((await child.done).signal, 'SIGKILL');
    } finally {
      await lock.release();
    }
    const mid = await db.pool.query(
      `SELECT (SELECT count(*)::int FROM prescore.run_chunks WHERE run_id = $1 AND status = 'done') AS done,
              (SELECT count(*)::int FROM prescore.serving WHERE job = 'ch' AND date = $2) AS serving,
              (SELECT count(*)::int FROM pg_inherits WHERE inhrelid = to_regclass('prescore.challenger_predictions_r' || $1)) AS attached`,
      [runId, KILL_DATE],
    );
    assert.ok(mid.rows[0].done < KILL_ROWS / 1000, 'killed before the run finished');
    assert.equal(mid.rows[0].serving, 0);
    assert.equal(mid.rows[0].attached, 0);
    // The process is gone: let its run look abandoned (no heartbeat for minutes) and run the date again.
    await db.pool.query(`UPDATE prescore.runs SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1`, [runId]);
    const resumed = await cli(db, ['run', 'ch', '--date', KILL_DATE, '--json'], { PRESCORE_LOG_LEVEL: 'warn' });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((JSON.parse(resumed.stdout) as { id: string }).id, runId, 'the same run resumed');
    const served = await db.pool.query('SELECT run_id::text FROM prescore.serving WHERE job = $1 AND date = $2', [
      'ch',
      KILL_DATE,
    ]);
    assert.equal(served.rows[0].run_id, runId);
    const counts = await db.pool.query<{ slot: number; n: number; d: number }>(
      `SELECT slot, count(*)::int AS n, count(DISTINCT key)::int AS d FROM (
         SELECT 0 AS slot, key FROM prescore.predictions WHERE run_id = $1
         UNION ALL SELECT slot, key FROM prescore.challenger_predictions WHERE run_id = $1) x GROUP BY slot ORDER BY slot`,
      [runId],
    );
    const logRejects = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM prescore.challenger_rejects WHERE run_id = $1 AND slot = 2',
      [runId],
    );
    const logged = KILL_ROWS - logRejects.rows[0]!.n;
    assert.deepEqual(counts.rows, [
      { slot: 0, n: KILL_ROWS, d: KILL_ROWS },
      { slot: 1, n: KILL_ROWS, d: KILL_ROWS },
      { slot: 2, n: logged, d: logged },
    ]);
    const models = await db.pool.query<{ slot: number; w: number; r: number }>(
      'SELECT slot, rows_written::int AS w, rows_rejected::int AS r FROM prescore.run_models WHERE run_id = $1 ORDER BY slot',
      [runId],
    );
    assert.deepEqual(models.rows, [
      { slot: 0, w: KILL_ROWS, r: 0 },
      { slot: 1, w: KILL_ROWS, r: 0 },
      { slot: 2, w: logged, r: KILL_ROWS - logged },
    ]);
  });
});
