import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { multiclassModel } from './fixtures/models.js';
import { cli, createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

const DATE = '2026-12-03';
const ROWS = 2000;
const TOL = 1e-9;

interface Row {
  key: string;
  c: number;
  h: number;
  cl: string;
  hl: string;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};
const pearson = (xs: number[], ys: number[]) => {
  const mx = mean(xs);
  const my = mean(ys);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  xs.forEach((x, i) => {
    sxy += (x - mx) * (ys[i]! - my);
    sxx += (x - mx) ** 2;
    syy += (ys[i]! - my) ** 2;
  });
  return sxy / Math.sqrt(sxx * syy);
};
/** Ranks 1..n, ties sharing their mean rank. */
const ranks = (xs: number[]) => {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) r[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
};
const top = (rows: Row[], by: 'c' | 'h', k: number) =>
  new Set(
    [...rows]
      .sort((a, b) => b[by] - a[by] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, k)
      .map((r) => r.key),
  );
/** percentile_cont: linear interpolation between the sorted values around f * (n - 1). */
const quantile = (sorted: number[], f: number) => {
  const pos = f * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return lo === hi ? sorted[lo]! : sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
};

/** The figures of `runs compare`, computed here from the stored rows, independently of the SQL. */
function expected(rows: Row[]) {
  const c = rows.map((r) => r.c);
  const h = rows.map((r) => r.h);
  const k = Math.ceil(rows.length * 0.1);
  const tc = top(rows, 'c', k);
  const th = top(rows, 'h', k);
  const sorted = [...c].sort((a, b) => a - b);
  const edges = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map((f) => quantile(sorted, f));
  const bin = (v: number) => edges.filter((e) => e <= v).length;
  const pc = new Array<number>(10).fill(0);
  const ph = new Array<number>(10).fill(0);
  for (const r of rows) {
    pc[bin(r.c)]!++;
    ph[bin(r.h)]!++;
  }
  let psi = 0;
  for (let b = 0; b < 10; b++) {
    const e = Math.max(pc[b]! / rows.length, 1e-4);
    const a = Math.max(ph[b]! / rows.length, 1e-4);
    psi += (a - e) * Math.log(a / e);
  }
  return {
    keys: rows.length,
    champion: { mean: mean(c), stddev: sd(c) },
    challenger: { mean: mean(h), stddev: sd(h) },
    pearson: pearson(c, h),
    spearman: pearson(ranks(c), ranks(h)),
    meanAbsDiff: mean(rows.map((r) => Math.abs(r.c - r.h))),
    labelAgreement: rows.filter((r) => r.cl === r.hl).length / rows.length,
    top10Overlap: [...tc].filter((x) => th.has(x)).length / k,
    psi,
    shares: { champion: pc.map((n) => n / rows.length), challenger: ph.map((n) => n / rows.length) },
  };
}

describe('runs compare', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('compare');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
    await registerModel(db, 'tier', 'multiclass');
    const other = multiclassModel(4, ['bronze', 'silver', 'gold'], 11);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-compare-'));
    fs.writeFileSync(path.join(dir, 'tier2.onnx'), other.bytes);
    const r = await cli(db, ['models', 'register', 'tier', path.join(dir, 'tier2.onnx'), '--alias', 'challenger']);
    assert.equal(r.code, 0, r.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
    const output = { score: 'probabilities[2]', label: 'label', outputs: 'probabilities' };
    writeJob(db, jobSpec('cmp', 'tier@champion', 'feats', featureNames(4), { output, challengers: ['tier@challenger'] }));
    writeJob(db, jobSpec('cmp-alone', 'tier@champion', 'feats', featureNames(4), { output }));
  });
  after(async () => db.drop());

  test('matches the figures computed from the stored rows', async () => {
    const run = await cli(db, ['run', 'cmp', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const runId = (JSON.parse(run.stdout) as { id: string }).id;
    const { rows } = await db.pool.query<Row>(
      `SELECT p.key, p.score AS c, h.score AS h, p.label AS cl, h.label AS hl
         FROM prescore.predictions p JOIN prescore.challenger_predictions h ON h.run_id = p.run_id AND h.key = p.key
        WHERE p.run_id = $1 AND h.slot = 1`,
      [runId],
    );
    assert.equal(rows.length, ROWS);
    const want = expected(rows);
    const r = await cli(db, ['runs', 'compare', runId, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as {
      champion: { ref: string; version: number };
      comparisons: (Record<string, unknown> & { psiBins: { champion: number; challenger: number }[] })[];
    };
    assert.deepEqual(got.champion, { ref: 'tier@champion', name: 'tier', version: 1 });
    assert.equal(got.comparisons.length, 1);
    const c = got.comparisons[0]!;
    assert.equal(c.keys, ROWS);
    assert.deepEqual(c.model, { name: 'tier', version: 2 });
    assert.ok((want.labelAgreement as number) > 0 && (want.labelAgreement as number) < 1, 'labels differ on some keys');
    for (const field of ['pearson', 'spearman', 'meanAbsDiff', 'labelAgreement', 'top10Overlap', 'psi'] as const) {
      assert.ok(
        Math.abs((c[field] as number) - want[field]) <= TOL,
        `${field}: got ${String(c[field])}, expected ${want[field]}`,
      );
    }
    for (const who of ['champion', 'challenger'] as const) {
      const m = c[who] as { mean: number; stddev: number };
      assert.ok(Math.abs(m.mean - want[who].mean) <= TOL, `${who} mean`);
      assert.ok(Math.abs(m.stddev - want[who].stddev) <= TOL, `${who} stddev`);
      c.psiBins.forEach((b, i) => assert.ok(Math.abs(b[who] - want.shares[who][i]!) <= TOL, `${who} bin ${i}`));
    }
    // The champion's deciles: a tenth of its keys in each bin.
    for (const b of c.psiBins) assert.ok(Math.abs(b.champion - 0.1) < 0.002, `champion share ${b.champion}`);

    const text = await cli(db, ['runs', 'compare', runId]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /challengers\[0\] tier@challenger = tier v2: 2,000 keys scored by both/);
    assert.match(text.stdout, /top 10% overlap\s+\d+\.\d\d%/);
    assert.match(text.stdout, /PSI\s+\d\.\d{4} \(10 bins on the champion's deciles\)/);
  });

  test('a run without challengers says so; an unknown run exits 2 naming it', async () => {
    const run = await cli(db, ['run', 'cmp-alone', '--date', DATE, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const runId = (JSON.parse(run.stdout) as { id: string }).id;
    const r = await cli(db, ['runs', 'compare', runId]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`run ${runId} \\(cmp-alone ${DATE}\\) scored no challengers.*"challengers"`));
    const json = await cli(db, ['runs', 'compare', runId, '--json']);
    assert.deepEqual((JSON.parse(json.stdout) as { comparisons: unknown[] }).comparisons, []);
    const unknown = await cli(db, ['runs', 'compare', '987654']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.lastError, /^error: run 987654 does not exist: see prescore runs list/);
  });
});
