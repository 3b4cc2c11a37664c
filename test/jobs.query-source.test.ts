import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { linearModel } from './fixtures/models.js';
import { resolveJob } from '../src/definitions/check.js';
import { loadJob } from '../src/definitions/load.js';
import { readChunk } from '../src/source/reader.js';
import {
  assertClose,
  cli,
  createTestDb,
  registerModel,
  seedFeatures,
  servedPredictions,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-12';

/** A job may read its features from a SQL query instead of a table; the query runs read-only. */
describe('source.query', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('query');
    await seedFeatures(db.pool, 'wide', { rows: 2500, features: 4, date: DATE });
    // The same features split over two tables, to be joined back by the job's query.
    await db.pool.query(`CREATE TABLE part_a AS SELECT id, as_of, f0, f1 FROM wide`);
    await db.pool.query(`CREATE TABLE part_b AS SELECT id AS customer, as_of AS day, f2, f3 FROM wide`);
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => db.drop());

  const querySpec = (name: string, query: string, extra: Record<string, unknown> = {}) => ({
    name,
    model: 'lin@champion',
    source: { query, key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2', 'f3'] },
    chunkRows: 1000,
    ...extra,
  });

  test('a join as the source scores every row right', async () => {
    writeJob(
      db,
      querySpec(
        'joined',
        'SELECT a.id, a.as_of, a.f0, a.f1, b.f2, b.f3 FROM part_a a JOIN part_b b ON b.customer = a.id AND b.day = a.as_of',
      ),
    );
    const v = await cli(db, ['jobs', 'validate', 'joined']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /ok {2}joined: 4 features from its query -> lin v1/);
    const run = await cli(db, ['run', 'joined', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as { rowsWritten: number; chunks: number };
    assert.equal(info.rowsWritten, 2500);
    assert.ok(info.chunks >= 3);
    const model = linearModel();
    const { rows } = await db.pool.query<{ id: string; f0: number; f1: number; f2: number; f3: number }>(
      `SELECT id::text, f0::float8, f1::float8, f2::float8, f3::float8 FROM wide`,
    );
    const served = await servedPredictions(db.pool, 'joined', DATE);
    assert.equal(served.rows.size, 2500);
    for (const r of rows) assertClose(served.rows.get(r.id)!.score!, model.expect([r.f0, r.f1, r.f2, r.f3]).score!, 1e-5, r.id);
  });

  test('a query that would modify data is refused: it runs read-only', async () => {
    await db.pool.query(`CREATE FUNCTION nuke() RETURNS real LANGUAGE sql AS 'DELETE FROM part_a; SELECT 0::real'`);
    writeJob(db, querySpec('sneaky', 'SELECT id, as_of, f0, f1, f0 AS f2, f1 + nuke() AS f3 FROM part_a'));
    const r = await cli(db, ['run', 'sneaky', '--date', DATE]);
    assert.notEqual(r.code, 0);
    assert.match(r.lastError, /cannot execute DELETE in a read-only transaction/);
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM part_a')).rows[0].n, 2500);
    assert.equal((await servedPredictions(db.pool, 'sneaky', DATE)).runId, null);
  });

  test('a query missing a listed column, or a job with both table and query, is refused naming the field', async () => {
    writeJob(db, querySpec('narrow', 'SELECT id, as_of, f0 FROM part_a'));
    const r = await cli(db, ['jobs', 'validate', 'narrow']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /source\.features\[1\]: column "f1" does not exist in the source query \(columns: id, as_of, f0\)/);
    writeJob(db, {
      ...querySpec('both', 'SELECT 1'),
      source: { table: 'wide', query: 'SELECT 1', key: 'id', partition: 'as_of', features: ['f0'] },
    });
    const both = await cli(db, ['jobs', 'validate', 'both']);
    assert.equal(both.code, 2);
    assert.match(both.lastError, /source\.table: give exactly one of table or query/);
  });

  // Each of these would run a second statement (ending the read-only transaction with COMMIT,
  // then writing) if the query reached PostgreSQL over the simple protocol.
  const escapes = [
    'SELECT * FROM public.wide) AS x LIMIT 0; COMMIT; CREATE TABLE public.pwned AS SELECT 1 AS x; SELECT * FROM (SELECT * FROM public.wide',
    'SELECT id, as_of, f0, f1, f2, f3 FROM wide; COMMIT; CREATE TABLE public.pwned AS SELECT 1 AS x',
    'SELECT id, as_of, f0, f1, f2, f3 FROM wide;\nCOMMIT;\nCREATE TABLE public.pwned AS SELECT 1 AS x --',
    "SELECT id, as_of, f0, f1, f2, f3 FROM wide WHERE 'a' = $$a$$; END; CREATE TABLE public.pwned AS SELECT 1 AS x; SELECT 1",
  ];

  test('a query that holds several statements is refused by validate and run, and writes nothing', async () => {
    for (const [i, query] of escapes.entries()) {
      writeJob(db, querySpec(`escape${i}`, query));
      for (const args of [
        ['jobs', 'validate', `escape${i}`],
        ['run', `escape${i}`, '--date', DATE],
        ['backfill', `escape${i}`, '--from', DATE, '--to', DATE, '--dry-run'],
      ]) {
        const r = await cli(db, args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /TypeError/);
        if (i < 2 || args[0] === 'jobs')
          assert.match(r.stderr, /source\.query (must be one SELECT statement|: PostgreSQL refuses it)/);
        const pwned = await db.pool.query(`SELECT to_regclass('public.pwned') AS t`);
        assert.equal(pwned.rows[0].t, null, `${args.join(' ')} with query ${i} created a table`);
      }
    }
    const r = await cli(db, ['jobs', 'validate', 'escape1']);
    assert.match(r.lastError, /source\.query must be one SELECT statement \(it holds several/);
  });

  test('the chunk reader refuses a query of several statements even if it got past validation', async () => {
    writeJob(db, querySpec('plain', 'SELECT id, as_of, f0, f1, f2, f3 FROM wide'));
    const resolved = await resolveJob(db.pool, loadJob(db.jobsDir, 'plain'));
    for (const query of escapes) {
      const client = await db.pool.connect();
      try {
        const stats = { value: null };
        await assert.rejects(async () => {
          for await (const _ of readChunk(client, { ...resolved, query }, DATE, null, null, stats)) void _;
        }, /multiple commands|syntax error/);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      assert.equal((await db.pool.query(`SELECT to_regclass('public.pwned') AS t`)).rows[0].t, null, query);
    }
  });
});
