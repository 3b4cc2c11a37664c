import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel } from './fixtures/models.js';
import {
  cli,
  createTestDb,
  featureNames,
  holdLock,
  jobSpec,
  registerModel,
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { assertSame, published, run } from './incremental-helpers.js';

const DAY1 = '2026-11-01';
const DAY2 = '2026-11-02';
const ROWS = 3000;
const OLD = '2026-01-01 00:00:00+00';

/**
 * Incremental runs publish exactly what a full run of the same data publishes (champion and
 * challenger scores, rejects of both), scoring only what changed; a model change rescores all.
 */
describe('incremental runs', () => {
  let db: TestDb;
  const features = featureNames(4);
  const full = (name: string) => jobSpec(name, 'lin@champion', 'inc', features, { challengers: ['log@1'], keepRuns: 3 });
  /** The full job's day 2 run: what every incremental run of day 2 must publish. */
  let truthId: string;
  before(async () => {
    db = await createTestDb('incremental');
    await db.pool.query(
      `CREATE TABLE inc (id bigint NOT NULL, as_of date NOT NULL, f0 real, f1 real, f2 real, f3 real,
                         updated_at timestamptz NOT NULL DEFAULT '${OLD}', PRIMARY KEY (as_of, id))`,
    );
    await db.pool.query(
      `INSERT INTO inc (id, as_of, f0, f1, f2, f3)
       SELECT g, $1, 2 * sin(g * 0.37), 2 * sin(g * 0.37 + 1.3), 2 * sin(g * 0.37 + 2.6), CASE WHEN g % 500 = 0 THEN NULL ELSE 2 * cos(g) END
         FROM generate_series(1, $2::int) g`,
      [DAY1, ROWS],
    );
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'log', 'log'); // NaN / -Infinity for f0 <= 0: challenger rejects
    writeJob(db, full('inc-full'));
    writeJob(db, { ...full('inc-since'), incremental: { changedSince: 'updated_at' } });
    writeJob(db, { ...full('inc-hash'), incremental: { mode: 'hash' } });
  });
  after(async () => db.drop());

  test('jobs validate names the incremental field and the fix', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ changedSince: 'nope' }, /incremental\.changedSince: column "nope" does not exist in inc/],
      [{ changedSince: 'f0' }, /incremental\.changedSince: column "f0" is real; it must be timestamp or timestamptz/],
      [{ mode: 'md5' }, /incremental: must be \{"changedSince": "<timestamp column>"\} or \{"mode": "hash"\}/],
    ];
    for (const [incremental, expected] of cases) {
      writeJob(db, { ...full('inc-bad'), incremental });
      const r = await cli(db, ['jobs', 'validate', 'inc-bad']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
    }
    const { source: _source, ...rest } = full('inc-bad');
    void _source;
    writeJob(db, {
      ...rest,
      source: { query: 'SELECT * FROM inc', key: 'id', partition: 'as_of', features },
      incremental: { mode: 'hash' },
    });
    const q = await cli(db, ['jobs', 'validate', 'inc-bad']);
    assert.equal(q.code, 2, q.stderr);
    assert.match(q.stderr, /incremental: needs source.table .* put the query in a view/);
    fs.rmSync(path.join(db.jobsDir, 'inc-bad.json'));
  });

  test('day 2 with 1% changed, keys gone and new: both modes publish what a full run does', async () => {
    const since1 = await run(db, 'inc-since', DAY1);
    const hash1 = await run(db, 'inc-hash', DAY1);
    for (const r of [since1, hash1]) {
      assert.equal(r.incremental?.full, true);
      assert.match(r.incremental?.reason ?? '', /no published run of inc-\w+ on or before 2026-11-01/);
      assert.equal(r.rowsCarried, 0);
    }
    // Day 2: day 1's rows as they were (their timestamps too), then 30 changed (1%), one made
    // bad and one bad made good, 20 gone, 25 new with an OLD timestamp (new keys count anyway).
    await db.pool.query(`INSERT INTO inc SELECT id, $2, f0, f1, f2, f3, updated_at FROM inc WHERE as_of = $1`, [DAY1, DAY2]);
    await db.pool.query(`UPDATE inc SET f0 = -f0, updated_at = now() WHERE as_of = $1 AND id % 100 = 7`, [DAY2]);
    await db.pool.query(`UPDATE inc SET f2 = NULL, updated_at = now() WHERE as_of = $1 AND id = 11`, [DAY2]);
    await db.pool.query(`UPDATE inc SET f3 = 0.5, updated_at = now() WHERE as_of = $1 AND id = 1000`, [DAY2]);
    await db.pool.query(`DELETE FROM inc WHERE as_of = $1 AND id % 150 = 1`, [DAY2]);
    await db.pool.query(
      `INSERT INTO inc (id, as_of, f0, f1, f2, f3) SELECT g, $1, sin(g), cos(g), 0.1, -0.2 FROM generate_series($2::int, $2::int + 24) g`,
      [DAY2, ROWS + 1],
    );
    const truth = await run(db, 'inc-full', DAY2);
    truthId = truth.id;
    const expected = await published(db, truth.id);
    const since2 = await run(db, 'inc-since', DAY2);
    const hash2 = await run(db, 'inc-hash', DAY2);
    for (const [r, base] of [
      [since2, since1],
      [hash2, hash1],
    ] as const) {
      assert.equal(r.incremental?.full, false);
      assert.equal(r.incremental?.baseRunId, base.id);
      assert.equal(r.incremental?.changed, 30 + 2 + 25, 'changed: 30 + 2 + 25 new');
      assert.equal(r.incremental?.gone, 20);
      assert.equal(r.rowsCarried, ROWS - 20 - 32);
      assert.equal(r.rowsRead, truth.rowsRead);
      assert.equal(r.rowsRejected, truth.rowsRejected);
      assertSame(await published(db, r.id), expected, `run ${r.id}`);
    }
    // A rerun of the same date starts from that date's run: nothing changed, all carried.
    const again = await run(db, 'inc-hash', DAY2);
    assert.equal(again.incremental?.baseRunId, hash2.id);
    assert.equal(again.incremental?.changed, 0);
    assert.equal(again.rowsCarried, truth.rowsRead);
    assertSame(await published(db, again.id), expected, 'rerun');
    const show = await cli(db, ['runs', 'show', again.id]);
    assert.match(show.stdout, new RegExp(`rowsCarried\\s+${truth.rowsRead}`));
  });

  test('after a rollback the base is the run serving; compare counts carried rows; kill -9 in the plan loses nothing', async () => {
    const expected = await published(db, truthId);
    const compare = async (id: string) => {
      const r = await cli(db, ['runs', 'compare', id, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { comparisons: Record<string, unknown>[] }).comparisons;
    };
    const figures = await compare(truthId);
    const serving = async () =>
      (
        await db.pool.query<{ id: string }>(
          `SELECT run_id::text AS id FROM prescore.serving WHERE job = 'inc-hash' AND date = $1`,
          [DAY2],
        )
      ).rows[0]!.id;
    const before = await serving();
    const back = await cli(db, ['runs', 'rollback', 'inc-hash', '--date', DAY2, '--json']);
    assert.equal(back.code, 0, back.stderr);
    const to = (JSON.parse(back.stdout) as { to: string }).to;
    assert.notEqual(to, before);
    const next = await run(db, 'inc-hash', DAY2);
    assert.equal(next.incremental?.baseRunId, to, 'the next incremental run starts from the run rolled back to');
    assert.equal(next.rowsCarried, next.rowsRead, 'nothing changed: every row carried, the challenger rows too');
    assertSame(await published(db, next.id), expected, 'after rollback');
    // Carried rows are the run's rows: compared like scored ones, the same figures as the full run's.
    const carriedFigures = await compare(next.id);
    assert.equal(carriedFigures.length, 1);
    assert.equal(carriedFigures[0]!.keys, figures[0]!.keys);
    for (const k of ['pearson', 'spearman', 'meanAbsDiff', 'psi'] as const) {
      assert.ok(Math.abs(Number(carriedFigures[0]![k]) - Number(figures[0]![k])) < 1e-9, `${k}`);
    }
    // Rolled back again (from the incremental run) to the run it carried from.
    const again = await cli(db, ['runs', 'rollback', 'inc-hash', '--date', DAY2, '--to', to, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await serving(), to);

    // kill -9 while the plan transaction waits for the base run's table (its carry-over), then again.
    const lock = await holdLock(db.pool, `LOCK TABLE prescore.predictions_r${to} IN ACCESS EXCLUSIVE MODE`);
    const victim = startCli(db, ['run', 'inc-hash', '--date', DAY2]);
    try {
      await waitFor(
        'the plan to wait on the base run',
        async () =>
          (
            await db.pool.query(
              `SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE NOT l.granted AND c.relname = $1 AND c.relnamespace = 'prescore'::regnamespace`,
              [`predictions_r${to}`],
            )
          ).rowCount! > 0,
        20_000,
      );
      victim.kill('SIGKILL');
      assert.equal((await victim.done).signal, 'SIGKILL');
    } finally {
      await lock.release();
    }
    const after = await run(db, 'inc-hash', DAY2);
    assert.equal(after.incremental?.baseRunId, to);
    assertSame(await published(db, after.id), expected, 'after kill -9 in the plan');
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM prescore.runs WHERE job = 'inc-hash' AND status NOT IN ('published', 'superseded')`,
    );
    assert.equal(rows[0]!.n, 0, 'the killed plan left no run behind');
  });

  test('a model promotion or --full rescores every row', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-inc-'));
    fs.writeFileSync(path.join(dir, 'lin2.onnx'), linearModel(4, 9).bytes);
    const reg = await cli(db, ['models', 'register', 'lin', path.join(dir, 'lin2.onnx'), '--alias', 'champion']);
    assert.equal(reg.code, 0, reg.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
    const truth = await run(db, 'inc-full', DAY2);
    for (const job of ['inc-since', 'inc-hash']) {
      const r = await run(db, job, DAY2);
      assert.equal(r.incremental?.full, true, job);
      assert.match(r.incremental?.reason ?? '', /the model is lin v2, not lin v1 since run \d+ \(2026-11-02\)/);
      assert.equal(r.rowsCarried, 0);
      assertSame(await published(db, r.id), await published(db, truth.id), job);
    }
    const forced = await run(db, 'inc-hash', DAY2, '--full');
    assert.equal(forced.incremental?.reason, '--full');
    assert.equal(forced.rowsCarried, 0);
  });
});
