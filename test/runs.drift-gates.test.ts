import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mergeProfiles } from '../src/profile/codec.js';
import { ChunkProfiler, mean, type ColumnProfile } from '../src/profile/profile.js';
import { request, startApi, type RunningApi } from './api-helpers.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  servedPredictions,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';

const [D1, D2, D3, D4] = ['2026-10-01', '2026-10-02', '2026-10-03', '2026-10-04'];
const ROWS = 5000;
const GATES = { featurePsi: 0.25, rowCountChange: 0.3 };

interface ReportJson {
  baseline: { kind: string; ref: string | null };
  report: {
    rows: { run: number; baseline: number; change: number | null };
    columns: { column: string; kind: string; psi: number | null; js: number | null; meanShift: number | null }[];
  };
  breaches: { gate: string; column: string | null; value: number; threshold: number; action: string }[];
}

async function runDate(
  db: TestDb,
  job: string,
  date: string,
): Promise<{ code: number | null; id: string; status: string; stderr: string }> {
  const r = await cli(db, ['run', job, '--date', date, '--json']);
  const info = JSON.parse(r.stdout || '{}') as { id?: string; status?: string };
  return { code: r.code, id: info.id ?? '', status: info.status ?? '', stderr: r.stderr };
}

async function report(db: TestDb, runId: string): Promise<ReportJson> {
  const r = await cli(db, ['runs', 'report', runId, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ReportJson;
}

/** Drift profiles, baselines and quality gates: bad data is held before anyone reads it. */
describe('drift and quality gates', () => {
  let db: TestDb;
  let api: RunningApi;
  let sd3 = 0;
  before(async () => {
    db = await createTestDb('drift');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D1 });
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D2, salt: 1 });
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D3, salt: 2 });
    sd3 = (await db.pool.query<{ sd: number }>(`SELECT stddev(f3)::float8 AS sd FROM feats WHERE as_of = $1`, [D1])).rows[0]!.sd;
    writeJob(db, jobSpec('drift', 'lin@champion', 'feats', featureNames(4), { gates: GATES }));
    api = await startApi(db);
  });
  after(async () => {
    await api?.close();
    await db?.drop();
  });

  test('a first run has nothing to compare with and publishes; the next, from the same distribution, has every PSI < 0.05', async () => {
    const first = await runDate(db, 'drift', D1);
    assert.equal(first.status, 'published', first.stderr);
    const r1 = await report(db, first.id);
    assert.equal(r1.baseline.ref, null);
    assert.deepEqual(r1.breaches, []);
    const second = await runDate(db, 'drift', D2);
    assert.equal(second.status, 'published', second.stderr);
    const r2 = await report(db, second.id);
    assert.equal(r2.baseline.kind, 'previous');
    assert.equal(r2.baseline.ref, first.id);
    const numeric = r2.report.columns.filter((c) => c.psi !== null);
    assert.deepEqual(
      numeric.map((c) => c.column),
      ['f0', 'f1', 'f2', 'f3', 'score'],
    );
    for (const c of numeric) assert.ok(c.psi! < 0.05, `${c.column}: PSI ${c.psi}`);
    assert.equal(r2.report.rows.change, 0);
  });

  test('the run profile merged over its chunks equals one pass over the rows it scored', async () => {
    const { rows } = await db.pool.query<{ columns: ColumnProfile[] }>(
      `SELECT p.columns FROM prescore.profiles p JOIN prescore.runs r ON r.id = p.run_id WHERE r.job = 'drift' AND r.date = $1`,
      [D2],
    );
    const stored = rows[0]!.columns;
    const chunks = (
      await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM prescore.run_chunks c JOIN prescore.runs r ON r.id = c.run_id WHERE r.job = 'drift' AND r.date = $1`,
        [D2],
      )
    ).rows[0]!.n;
    assert.ok(chunks >= 5, `${chunks} chunks`);
    const src = await db.pool.query<{ f0: number; f1: number; f2: number; f3: number }>(
      'SELECT f0, f1, f2, f3 FROM feats WHERE as_of = $1 ORDER BY id',
      [D2],
    );
    const values = new Float32Array(src.rows.flatMap((r) => [r.f0, r.f1, r.f2, r.f3]));
    // What the reader counts of each feature, over the same rows.
    const readerStats = (from: number, n: number) =>
      [0, 1, 2, 3].map((f) => {
        const col = Array.from({ length: n }, (_, r) => values[(from + r) * 4 + f]!);
        return {
          count: n,
          nulls: 0,
          sum: col.reduce((a, v) => a + v, 0),
          sumSq: col.reduce((a, v) => a + v * v, 0),
          min: Math.min(...col),
          max: Math.max(...col),
        };
      });
    const single = new ChunkProfiler(featureNames(4), {});
    single.addFeatures(values, src.rows.length);
    const onePass = single.finish(readerStats(0, src.rows.length));
    for (const p of onePass) {
      const s = stored.find((c) => c.column === p.column)!;
      assert.deepEqual(s.hist, p.hist, `${p.column}: histogram`);
      assert.equal(s.count, p.count);
      assert.ok(Math.abs(mean(s)! - mean(p)!) <= 1e-9 * Math.max(1, Math.abs(mean(p)!)), `${p.column}: mean`);
      assert.equal(s.min, p.min);
      assert.equal(s.max, p.max);
    }
    // And in memory: any split merges to the same counts.
    for (const parts of [2, 3, 7]) {
      const size = Math.ceil(src.rows.length / parts);
      const profs = [];
      for (let i = 0; i < src.rows.length; i += size) {
        const n = Math.min(size, src.rows.length - i);
        const p = new ChunkProfiler(featureNames(4), {});
        p.addFeatures(values.slice(i * 4, (i + n) * 4), n);
        profs.push(p.finish(readerStats(i, n)));
      }
      const merged = mergeProfiles(profs);
      for (const p of onePass) {
        const m = merged.find((x) => x.column === p.column)!;
        assert.deepEqual(m.hist, p.hist);
        assert.equal(m.count, p.count);
        assert.ok(Math.abs(mean(m)! - mean(p)!) <= 1e-9 * Math.max(1, Math.abs(mean(p)!)));
      }
    }
  });

  test('f3 shifted by +2 baseline SDs: PSI > 0.25, held; GET keeps the previous run; approve publishes and the API switches within a second', async () => {
    const published = await runDate(db, 'drift', D3);
    assert.equal(published.status, 'published', published.stderr);
    await db.pool.query(`UPDATE feats SET f3 = f3 + 2 * $2::float8 WHERE as_of = $1`, [D3, sd3]);
    const held = await runDate(db, 'drift', D3);
    assert.equal(held.code, 1);
    assert.equal(held.status, 'held');
    assert.match(
      held.stderr,
      new RegExp(
        `error: run ${held.id} held, not published: featurePsi \\S+ > 0\\.25 on f3 \\(block\\); see prescore runs report ${held.id}`,
      ),
    );
    const rep = await report(db, held.id);
    const f3 = rep.report.columns.find((c) => c.column === 'f3')!;
    assert.ok(f3.psi! > 0.25, `PSI ${f3.psi}`);
    assert.ok(Math.abs(f3.meanShift! - 2) < 0.2, `mean shift ${f3.meanShift}`);
    for (const c of rep.report.columns.filter((x) => ['f0', 'f1', 'f2'].includes(x.column))) assert.ok(c.psi! < 0.05);
    assert.deepEqual(
      rep.breaches.map((b) => [b.gate, b.column, b.action]),
      [['featurePsi', 'f3', 'block']],
    );
    const show = await cli(db, ['runs', 'show', held.id, '--json']);
    assert.match((JSON.parse(show.stdout) as { heldReason: string }).heldReason, /featurePsi \S+ > 0\.25 on f3/);
    const text = await cli(db, ['runs', 'report', held.id]);
    assert.match(text.stdout, /f3 +feature .* FLAGGED/);
    assert.match(text.stdout, /base █+/);
    // Served: the previous run of D3, throughout.
    const get = await request<{ runId: string }>(api.base, `/v1/predictions/drift/7?asOf=${D3}`);
    assert.equal(get.body.runId, published.id);
    assert.equal((await servedPredictions(db.pool, 'drift', D3)).runId, published.id);
    // The report over HTTP, as the CLI prints it.
    const http = await request<{ run: { status: string }; breaches: unknown[] }>(api.base, `/v1/runs/${held.id}/report`);
    assert.equal(http.status, 200, http.text);
    assert.equal(http.body.run.status, 'held');
    assert.equal(http.body.breaches.length, 1);
    assert.equal((await request(api.base, '/v1/runs/99999/report')).status, 404);
    // A person approves: published, recorded, served within a second.
    const noReason = await cli(db, ['runs', 'approve', held.id]);
    assert.notEqual(noReason.code, 0);
    const approved = await cli(db, ['runs', 'approve', held.id, '--reason', 'new pricing moved f3', '--by', 'ana']);
    assert.equal(approved.code, 0, approved.stderr);
    const t0 = Date.now();
    await waitFor(
      'the API to serve the approved run',
      async () => (await request<{ runId: string }>(api.base, `/v1/predictions/drift/7?asOf=${D3}`)).body.runId === held.id,
      1000,
    );
    assert.ok(Date.now() - t0 <= 1000);
    const after = JSON.parse((await cli(db, ['runs', 'show', held.id, '--json'])).stdout) as Record<string, unknown>;
    assert.equal(after.status, 'published');
    assert.equal(after.reviewedBy, 'ana');
    assert.equal(after.reviewReason, 'new pricing moved f3');
    assert.ok(after.reviewedAt);
  });

  test('40% fewer rows: held by rowCountChange; never served, skipped by backfill; rejected, a later run of the date publishes', async () => {
    await seedFeatures(db.pool, 'feats', { rows: 3000, features: 4, date: D4, salt: 3 });
    await db.pool.query(`UPDATE feats SET f3 = f3 + 2 * $2::float8 WHERE as_of = $1`, [D4, sd3]);
    const held = await runDate(db, 'drift', D4);
    assert.equal(held.status, 'held', held.stderr);
    const rep = await report(db, held.id);
    assert.deepEqual(
      rep.breaches.map((b) => [b.gate, b.column]),
      [['rowCountChange', null]],
    );
    assert.ok(Math.abs(rep.report.rows.change! + 0.4) < 1e-9, `change ${rep.report.rows.change}`);
    assert.equal((await servedPredictions(db.pool, 'drift', D4)).runId, null);
    const grid = await cli(db, ['backfill', 'drift', '--from', '2026-09-30', '--to', D4, '--status']);
    assert.equal(grid.code, 0, grid.stderr);
    assert.match(grid.stdout, /2026-09-30 +missing/);
    assert.match(grid.stdout, new RegExp(`2026-10-03 +published +${'\\d+'}`));
    assert.match(grid.stdout, new RegExp(`${D4} +held +${held.id}`));
    assert.match(grid.stdout, /drift 2026-09-30\.\.2026-10-04: 1 missing, 3 published, 1 held/);
    assert.equal((await request(api.base, `/v1/predictions/drift/7?asOf=${D4}`)).status, 404);
    const bf = await cli(db, ['backfill', 'drift', '--from', D4, '--to', D4, '--local']);
    assert.equal(bf.code, 0, bf.stderr);
    assert.match(bf.stdout, /1 skipped \(held\)/);
    assert.match(bf.stderr, /held by quality gates, not published: 2026-10-04/);
    assert.equal((await cli(db, ['runs', 'approve', '99999', '--reason', 'x'])).code, 2);
    const rejected = await cli(db, ['runs', 'reject', held.id, '--reason', 'half the upstream load failed']);
    assert.equal(rejected.code, 0, rejected.stderr);
    // The late rows arrive: keys 3001 to 5000.
    await seedFeatures(db.pool, 'feats', { rows: 2000, features: 4, date: D4, salt: 4, keyExpr: 'g + 3000' });
    await db.pool.query(`UPDATE feats SET f3 = f3 + 2 * $2::float8 WHERE as_of = $1 AND id > 3000`, [D4, sd3]);
    const again = await runDate(db, 'drift', D4);
    assert.equal(again.status, 'published', again.stderr);
    assert.equal((await servedPredictions(db.pool, 'drift', D4)).runId, again.id);
  });

  test('a named profile from training data is a baseline; bad gates and mismatched profiles are refused naming the fix', async () => {
    await db.pool.query(`CREATE TABLE training AS SELECT f0, f1, f2, f3 FROM feats WHERE as_of = $1`, [D1]);
    await db.pool.query(`CREATE TABLE narrow AS SELECT f0, f1 FROM feats WHERE as_of = $1`, [D1]);
    const made = await cli(db, ['profiles', 'create', 'train-2026', '--job', 'drift', '--table', 'training']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /profile train-2026: 5,000 rows of the table "public"."training", 4 features of job drift/);
    const list = JSON.parse((await cli(db, ['profiles', 'list', '--json'])).stdout) as { name: string; rows: number }[];
    assert.deepEqual(
      list.map((p) => [p.name, p.rows]),
      [['train-2026', 5000]],
    );
    writeJob(
      db,
      jobSpec('vs-train', 'lin@champion', 'feats', featureNames(4), {
        monitor: { baseline: 'profile:train-2026' },
        gates: GATES,
      }),
    );
    const run = await runDate(db, 'vs-train', D2);
    assert.equal(run.status, 'published', run.stderr);
    const rep = await report(db, run.id);
    assert.deepEqual(rep.baseline, { kind: 'profile', ref: 'train-2026', rows: null });
    for (const c of rep.report.columns.filter((x) => x.kind === 'feature')) assert.ok(c.psi! < 0.05, `${c.column} ${c.psi}`);

    const cases: [Record<string, unknown>, RegExp][] = [
      [{ gates: { featurePSI: 0.2 } }, /gates: unknown gate\(s\) featurePSI; the gates are featurePsi, featureJs/],
      [{ gates: { featurePsi: 11 } }, /gates\.featurePsi: must be at most 10/],
      [{ gates: { rowCountChange: { threshold: 0.3, action: 'stop' } } }, /gates\.rowCountChange/],
      [{ monitor: { baseline: 'yesterday' } }, /monitor\.baseline: must be "previous", "run:<id>" or "profile:<name>"/],
      [
        { monitor: { baseline: 'profile:nope' } },
        /monitor\.baseline: profile "nope" does not exist; make it with prescore profiles create nope/,
      ],
    ];
    for (const [extra, message] of cases) {
      writeJob(db, jobSpec('bad', 'lin@champion', 'feats', featureNames(4), extra));
      const r = await cli(db, ['jobs', 'validate', 'bad']);
      assert.equal(r.code, 2, JSON.stringify(extra));
      assert.match(r.stderr, message);
    }
    const narrow = await cli(db, [
      'profiles',
      'create',
      'narrow',
      '--job',
      'drift',
      '--query',
      'SELECT f0, f1, f0 AS f2, f1 AS f3 FROM narrow',
    ]);
    assert.equal(narrow.code, 0, narrow.stderr);
    writeJob(db, jobSpec('bad', 'lin@champion', 'feats', ['f0', 'f1', 'f2'], { monitor: { baseline: 'profile:narrow' } }));
    const mismatch = await cli(db, ['jobs', 'validate', 'bad']);
    assert.equal(mismatch.code, 2);
    assert.match(
      mismatch.stderr,
      /monitor\.baseline: profile "narrow" profiles f0, f1, f2, f3 but the job's features are f0, f1, f2/,
    );
    const injected = await cli(db, [
      'profiles',
      'create',
      'evil',
      '--job',
      'drift',
      '--query',
      'SELECT f0, f1, f2, f3 FROM training; DROP TABLE training',
    ]);
    assert.equal(injected.code, 2);
    assert.match(injected.lastError, /--query must be one SELECT statement/);
    assert.ok((await db.pool.query(`SELECT to_regclass('public.training') AS t`)).rows[0].t);
  });
});
