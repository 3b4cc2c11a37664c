import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { evaluationProvider, type Evaluation, type EvaluationRow } from '../src/outcomes/evaluate.js';
import { binaryModel } from './fixtures/models.js';
import { request, runJob, startApi, type RunningApi } from './api-helpers.js';
import { assertClose, cli, createTestDb, registerModel, servedPredictions, writeJob, type TestDb } from './helpers.js';

const D1 = '2026-05-01';
const D2 = '2026-05-02';
const ROWS = 400;

interface Pair {
  score: number;
  y: number;
  label: string | null;
}

/** AUC as the share of (positive, negative) pairs ordered right, ties counting half: no ranks. */
function pairAuc(rows: Pair[]): number {
  const pos = rows.filter((r) => r.y === 1);
  const neg = rows.filter((r) => r.y === 0);
  let u = 0;
  for (const p of pos) for (const n of neg) u += p.score > n.score ? 1 : p.score === n.score ? 0.5 : 0;
  return u / (pos.length * neg.length);
}

function logLoss(rows: Pair[]): number {
  let sum = 0;
  for (const r of rows) {
    const p = Math.min(Math.max(r.score, 1e-15), 1 - 1e-15);
    sum += -(r.y * Math.log(p) + (1 - r.y) * Math.log(1 - p));
  }
  return sum / rows.length;
}

function accuracy(rows: Pair[]): number {
  const predicted = (r: Pair) => (r.label === '1' ? 1 : r.label === '0' ? 0 : r.score >= 0.5 ? 1 : 0);
  return rows.filter((r) => predicted(r) === r.y).length / rows.length;
}

describe('evaluate: served predictions against outcomes', () => {
  let db: TestDb;
  let api: RunningApi;
  const runs: Record<string, string> = {};
  /** The outcome of each (date, key), as the test wrote them. */
  const outcomes = new Map<string, number>();

  before(async () => {
    db = await createTestDb('evaluate');
    await registerModel(db, 'bin', 'binary');
    await registerModel(db, 'lin', 'linear-float32');
    // Few distinct feature rows, so many scores tie (the AUC must average them).
    await db.pool.query(
      `CREATE TABLE feats (id bigint, as_of date, f0 real, f1 real, f2 real, f3 real, PRIMARY KEY (id, as_of))`,
    );
    for (const [date, shift] of [
      [D1, 0],
      [D2, 5],
    ] as const) {
      await db.pool.query(
        `INSERT INTO feats SELECT g, $1::date, ((g + $3) % 37) * 0.05 - 0.9, (g % 3) * 0.5 - 0.5, 0.1, (g % 5) * 0.2
           FROM generate_series(1, $2::int) g`,
        [date, ROWS, shift],
      );
    }
    const outcomesOf = { table: 'outc', key: 'cid', date: 'day', outcome: 'churned' };
    writeJob(db, {
      name: 'ev-bin',
      model: 'bin@champion',
      source: { table: 'feats', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2'] },
      output: { score: 'probabilities[1]', label: 'label' },
      outcomes: outcomesOf,
      chunkRows: 1000,
    });
    writeJob(db, {
      name: 'ev-reg',
      model: 'lin@champion',
      source: { table: 'feats', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2', 'f3'] },
      outcomes: { query: 'SELECT cid, day, value FROM outr', key: 'cid', date: 'day', outcome: 'value' },
      chunkRows: 1000,
    });
    writeJob(db, {
      name: 'ev-none',
      model: 'bin@champion',
      source: { table: 'feats', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2'] },
      output: { score: 'probabilities[1]', label: 'label' },
    });
    runs.binD1 = await runJob(db, 'ev-bin', D1);
    runs.binD2 = await runJob(db, 'ev-bin', D2);
    runs.reg = await runJob(db, 'ev-reg', D1);
    // Outcomes drawn from the scores (so the AUC is far from 0.5), for 8 keys in 9; plus rows
    // that match nothing: unknown keys, a NULL outcome, a date out of the range.
    await db.pool.query(`CREATE TABLE outc (cid bigint, day date, churned boolean)`);
    await db.pool.query(
      `INSERT INTO outc SELECT p.key::bigint, s.date, (abs(hashtext(p.key || s.date::text)) % 1000) / 1000.0 < p.score
         FROM prescore.serving s JOIN prescore.predictions p ON p.run_id = s.run_id
        WHERE s.job = 'ev-bin' AND p.key::bigint % 9 <> 0`,
    );
    await db.pool.query(
      `INSERT INTO outc VALUES (100001, $1, true), (100002, $1, false), (9, $1, NULL), (1, '2026-04-30', true)`,
      [D1],
    );
    const { rows } = await db.pool.query<{ cid: string; day: string; churned: boolean | null }>(
      `SELECT cid::text, day::text, churned FROM outc`,
    );
    for (const r of rows) if (r.churned !== null) outcomes.set(`${r.day} ${r.cid}`, r.churned ? 1 : 0);
    await db.pool.query(`CREATE TABLE outr (cid bigint, day date, value numeric)`);
    await db.pool.query(
      `INSERT INTO outr SELECT p.key::bigint, $1::date, round((p.score + ((abs(hashtext(p.key)) % 100) - 50) / 100.0)::numeric, 3)
         FROM prescore.predictions p WHERE p.run_id = $2::bigint AND p.key::bigint % 4 <> 0`,
      [D1, runs.reg],
    );
    api = await startApi(db, { evaluation: evaluationProvider(db.pool, db.jobsDir) });
  });
  after(async () => {
    await api?.close();
    await db?.drop();
  });

  /** The test's own join of the served predictions with the outcomes. */
  async function pairs(date: string): Promise<Pair[]> {
    const { rows } = await servedPredictions(db.pool, 'ev-bin', date);
    return [...rows.values()]
      .filter((p) => outcomes.has(`${date} ${p.key}`))
      .map((p) => ({ score: p.score!, y: outcomes.get(`${date} ${p.key}`)!, label: p.label }));
  }

  function checkClassifier(row: EvaluationRow, expected: Pair[], what: string): void {
    assert.equal(row.matched, expected.length, `${what}: matched`);
    assert.equal(row.positives, expected.filter((p) => p.y === 1).length, `${what}: positives`);
    assertClose(row.auc!, pairAuc(expected), 1e-6, `${what}: AUC`);
    assertClose(row.logLoss!, logLoss(expected), 1e-6, `${what}: log loss`);
    assertClose(row.accuracy!, accuracy(expected), 1e-9, `${what}: accuracy`);
    const bins = Array.from({ length: 10 }, (_, i) => expected.filter((p) => Math.min(Math.floor(p.score * 10), 9) === i));
    assert.deepEqual(
      row.calibration!.map((b) => b.count),
      bins.map((b) => b.length),
      `${what}: calibration counts`,
    );
    row.calibration!.forEach((b, i) => {
      if (bins[i]!.length === 0) return assert.equal(b.observedRate, null);
      assertClose(b.observedRate!, bins[i]!.filter((p) => p.y === 1).length / bins[i]!.length, 1e-9, `${what}: bin ${i} rate`);
      assertClose(b.meanPredicted!, bins[i]!.reduce((s, p) => s + p.score, 0) / bins[i]!.length, 1e-9, `${what}: bin ${i} mean`);
    });
  }

  test('a classifier: AUC (ties averaged), log loss, accuracy and calibration per date and overall match an independent computation', async (t) => {
    const r = await cli(db, ['evaluate', 'ev-bin', '--from', '2026-04-30', '--to', D2, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const e = JSON.parse(r.stdout) as Evaluation;
    assert.equal(e.kind, 'classifier');
    assert.deepEqual(
      e.runs.map((x) => [x.date, x.runId]),
      [
        [D1, runs.binD1],
        [D2, runs.binD2],
      ],
    );
    assert.deepEqual(
      e.rows.map((x) => [x.model.name, x.model.version, x.date]),
      [
        ['bin', 1, D1],
        ['bin', 1, D2],
        ['bin', 1, null],
      ],
    );
    const p1 = await pairs(D1);
    const p2 = await pairs(D2);
    assert.ok(new Set(p1.map((p) => p.score)).size < p1.length / 3, 'scores tie');
    checkClassifier(e.rows[0]!, p1, D1);
    checkClassifier(e.rows[1]!, p2, D2);
    checkClassifier(e.rows[2]!, [...p1, ...p2], 'overall');
    t.diagnostic(`AUC ${e.rows[2]!.auc} log loss ${e.rows[2]!.logLoss} over ${e.rows[2]!.matched} keys`);

    const text = await cli(db, ['evaluate', 'ev-bin', '--from', D1, '--to', D1]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^MODEL\s+DATE\s+MATCHED\s+POSITIVES\s+AUC\s+LOG LOSS\s+ACCURACY$/m);
    assert.match(text.stdout, /calibration of bin v1, all dates:/);

    // The API answers the same JSON.
    const got = await request<Evaluation>(api.base, `/v1/jobs/ev-bin/evaluation?from=2026-04-30&to=${D2}`);
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.body, e);
  });

  test('a regressor (outcomes from a query): RMSE and MAE', async () => {
    const r = await cli(db, ['evaluate', 'ev-reg', '--from', D1, '--to', D1, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const e = JSON.parse(r.stdout) as Evaluation;
    assert.equal(e.kind, 'regressor');
    const { rows: preds } = await servedPredictions(db.pool, 'ev-reg', D1);
    const { rows } = await db.pool.query<{ cid: string; value: string }>('SELECT cid::text, value::text FROM outr');
    const diffs = rows.map((o) => preds.get(o.cid)!.score! - Number(o.value));
    const overall = e.rows.find((x) => x.date === null)!;
    assert.equal(overall.matched, rows.length);
    assertClose(overall.rmse!, Math.sqrt(diffs.reduce((s, d) => s + d * d, 0) / diffs.length), 1e-9, 'RMSE');
    assertClose(overall.mae!, diffs.reduce((s, d) => s + Math.abs(d), 0) / diffs.length, 1e-9, 'MAE');
    assert.equal(overall.auc, undefined);
  });

  test('a challenger scored by the run is evaluated as its own model version (same name, another version)', async () => {
    // A real challenger: another binary classifier registered as bin v2, scored in the run's pass.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-ev-'));
    const other = binaryModel(3, 21);
    fs.writeFileSync(path.join(tmp, 'bin2.onnx'), other.bytes);
    const reg = await cli(db, ['models', 'register', 'bin', path.join(tmp, 'bin2.onnx'), '--alias', 'challenger']);
    assert.equal(reg.code, 0, reg.stderr);
    fs.rmSync(tmp, { recursive: true, force: true });
    writeJob(db, {
      name: 'ev-ch',
      model: 'bin@champion',
      challengers: ['bin@challenger'],
      source: { table: 'feats', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2'] },
      output: { score: 'probabilities[1]', label: 'label' },
      outcomes: { table: 'outc', key: 'cid', date: 'day', outcome: 'churned' },
      chunkRows: 1000,
    });
    const run = await runJob(db, 'ev-ch', D1);
    const e = (await request<Evaluation>(api.base, `/v1/jobs/ev-ch/evaluation?from=${D1}&to=${D1}`)).body;
    assert.deepEqual(
      e.rows.map((x) => [x.model.name, x.model.version, x.date]),
      [
        ['bin', 1, D1],
        ['bin', 1, null],
        ['bin', 2, D1],
        ['bin', 2, null],
      ],
    );
    const { rows } = await db.pool.query<{ key: string; score: number; label: string }>(
      'SELECT key, score, label FROM prescore.challenger_predictions WHERE run_id = $1 AND slot = 1',
      [run],
    );
    assert.equal(rows.length, ROWS);
    const source = await db.pool.query<{ id: string; f0: number; f1: number; f2: number }>(
      'SELECT id::text, f0, f1, f2 FROM feats WHERE as_of = $1',
      [D1],
    );
    const x = new Map(source.rows.map((r) => [r.id, [r.f0, r.f1, r.f2]]));
    for (const r of rows) assertClose(r.score, other.expect(x.get(r.key)!).score!, 1e-5, `challenger key ${r.key}`);
    const challenger = rows
      .filter((c) => outcomes.has(`${D1} ${c.key}`))
      .map((c) => ({ score: c.score, y: outcomes.get(`${D1} ${c.key}`)!, label: c.label }));
    // The champion is the ev-bin job's model on the same rows: the same figures.
    checkClassifier(e.rows[0]!, await pairs(D1), 'champion');
    checkClassifier(e.rows[2]!, challenger, 'challenger');
    assert.notEqual(e.rows[2]!.auc, e.rows[0]!.auc);
  });

  test('bad input: outcomes without the key, date or a numeric outcome column, several statements, a write, from > to', async () => {
    const base = {
      model: 'bin@champion',
      source: { table: 'feats', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2'] },
      output: { score: 'probabilities[1]', label: 'label' },
    };
    const bad: Record<string, Record<string, string>> = {
      'ev-nokey': { table: 'outc', key: 'customer', date: 'day', outcome: 'churned' },
      'ev-nodate': { table: 'outc', key: 'cid', date: 'as_of', outcome: 'churned' },
      'ev-text': { query: 'SELECT cid, day, churned::text AS churned FROM outc', key: 'cid', date: 'day', outcome: 'churned' },
      'ev-keytype': { query: 'SELECT cid::text AS cid, day, churned FROM outc', key: 'cid', date: 'day', outcome: 'churned' },
      'ev-multi': { query: 'SELECT * FROM outc; DROP TABLE outc', key: 'cid', date: 'day', outcome: 'churned' },
      'ev-write': {
        query: 'WITH d AS (DELETE FROM outc RETURNING *) SELECT * FROM d',
        key: 'cid',
        date: 'day',
        outcome: 'churned',
      },
    };
    for (const [name, outcomesOf] of Object.entries(bad)) writeJob(db, { name, ...base, outcomes: outcomesOf });
    const checks: [string, RegExp][] = [
      [
        'ev-nokey',
        /outcomes\.key: column "customer" does not exist in outc \(columns: cid, day, churned\); name the column that holds the job's key/,
      ],
      ['ev-nodate', /outcomes\.date: column "as_of" does not exist in outc .*name the column that holds the date/],
      ['ev-text', /outcomes\.outcome: column "churned" is text, not numeric or boolean: make it a number in outcomes\.query/],
      ['ev-keytype', /outcomes\.key: column "cid" is text but source\.key "id" is bigint: keys are matched by their text/],
      ['ev-multi', /outcomes\.query must be one SELECT statement/],
      ['ev-write', /outcomes\.query: PostgreSQL refuses it: WITH clause containing a data-modifying statement/],
    ];
    const results = await Promise.all(checks.map(([name]) => cli(db, ['jobs', 'validate', name])));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${checks[i]![0]}: ${r.stderr}`);
      assert.match(r.stderr, checks[i]![1]);
    });
    assert.ok(Number((await db.pool.query('SELECT count(*) AS n FROM outc')).rows[0].n) > 0, 'outc is intact');
    const both = {
      name: 'ev-both',
      ...base,
      outcomes: { table: 'outc', query: 'SELECT 1', key: 'cid', date: 'day', outcome: 'x' },
    };
    writeJob(db, both);
    const good = await cli(db, ['jobs', 'validate', 'ev-bin']);
    assert.equal(good.code, 0, good.stderr);

    const cases: [string[], RegExp][] = [
      [['ev-both', '--from', D1, '--to', D1], /outcomes\.table: give exactly one of table or query/],
      [['ev-bin', '--from', D2, '--to', D1], /--from 2026-05-02 is after --to 2026-05-01/],
      [
        ['ev-bin', '--from', '2025-05-01', '--to', D2],
        /--from 2025-05-01 to --to 2026-05-02 is 367 dates; evaluate at most 366 at a time/,
      ],
      [['ev-bin', '--from', '2026-13-01', '--to', D1], /--from "2026-13-01" is not a calendar date/],
      [['ev-nokey', '--from', D1, '--to', D1], /outcomes\.key: column "customer" does not exist/],
    ];
    cases.push([['ev-none', '--from', D1, '--to', D1], /job ev-none has no outcomes: add "outcomes"/]);
    // Passes the LIMIT 0 check (nothing runs), then the read-only transaction refuses the write.
    await db.pool.query('CREATE SEQUENCE ev_seq');
    writeJob(db, {
      name: 'ev-nextval',
      ...base,
      outcomes: {
        query: "SELECT cid, day, churned FROM outc WHERE nextval('ev_seq') > 0",
        key: 'cid',
        date: 'day',
        outcome: 'churned',
      },
    });
    cases.push([
      ['ev-nextval', '--from', D1, '--to', D1],
      /outcomes\.query must only read \(it runs read-only\): cannot execute nextval/,
    ]);
    const rs = await Promise.all(cases.map(([args]) => cli(db, ['evaluate', ...args])));
    rs.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i]![0].join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, cases[i]![1]);
    });
  });

  test('the endpoint: 400 naming the parameter, 404 for an unknown job, 409 without outcomes, a token for the job', async () => {
    const get = (path: string, token?: string) => request<{ error: string }>(api.base, path, { token });
    const cases: [string, number, RegExp][] = [
      [`/v1/jobs/ev-bin/evaluation?from=2026-5-1&to=${D1}`, 400, /^from "2026-5-1" is not a calendar date/],
      [`/v1/jobs/ev-bin/evaluation?from=${D1}`, 400, /^to is required/],
      [`/v1/jobs/ev-bin/evaluation?from=${D2}&to=${D1}`, 400, /^from 2026-05-02 is after to 2026-05-01/],
      [
        `/v1/jobs/ev-bin/evaluation?from=1970-01-01&to=${D1}`,
        400,
        /^from 1970-01-01 to to 2026-05-01 is \d+ dates; evaluate at most 366/,
      ],
      [`/v1/jobs/ev-bin/evaluation?from=${D1}&to=${D1}&model=x`, 400, /unknown query parameter "model"/],
      [`/v1/jobs/nosuch/evaluation?from=${D1}&to=${D1}`, 404, /job "nosuch" does not exist/],
      [`/v1/jobs/ev-none/evaluation?from=${D1}&to=${D1}`, 409, /job ev-none has no outcomes/],
    ];
    for (const [path, status, message] of cases) {
      const r = await get(path);
      assert.equal(r.status, status, `${path}: ${r.text}`);
      assert.match(r.body.error, message, path);
    }
    const created = await cli(db, ['tokens', 'create', '--job', 'ev-reg']);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    const path = `/v1/jobs/ev-bin/evaluation?from=${D1}&to=${D1}`;
    let status = 0;
    for (let i = 0; i < 100 && status !== 401; i++) {
      status = (await get(path)).status;
      if (status !== 401) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(status, 401, 'a token is needed once tokens exist');
    assert.equal((await get(path, token)).status, 403, "a token of another job may not read this job's evaluation");
    assert.equal((await get(`/v1/jobs/ev-reg/evaluation?from=${D1}&to=${D1}`, token)).status, 200);
  });
});
