import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tableFromIPC } from 'apache-arrow';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { multiclassModel } from './fixtures/models.js';
import { runJob, storedRows, type StoredRow } from './api-helpers.js';
import { cli, createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';
import { layerize } from './layer-helpers.js';

const D1 = '2026-06-01';
const D2 = '2026-06-02';
const D3 = '2026-06-03';
const D4 = '2026-06-04';
const ROWS = 300;
const F = featureNames(4);

/** The rows a reader must see for a layer: layerize's scores, the labels and outputs the run stored before. */
function expectedRows(full: Map<string, StoredRow>, scores: Map<string, number | null>): Map<string, StoredRow> {
  return new Map([...scores].map(([key, score]) => [key, { ...full.get(key)!, key, score }]));
}

/** Every field of a number within 1e-12 (relative), the rest equal: sums over a union may add in another order. */
function assertNear(actual: unknown, expected: unknown, where = '$'): void {
  if (typeof expected === 'number' && typeof actual === 'number') {
    assert.ok(Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `${where}: ${actual} != ${expected}`);
  } else if (expected !== null && typeof expected === 'object') {
    assert.equal(typeof actual, 'object', where);
    assert.deepEqual(Object.keys(actual as object).sort(), Object.keys(expected).sort(), where);
    for (const [k, v] of Object.entries(expected)) assertNear((actual as Record<string, unknown>)[k], v, `${where}.${k}`);
  } else assert.deepEqual(actual, expected, where);
}

describe('readers of a layered run: exports, bundles, evaluate, rollback, retention', () => {
  let db: TestDb;
  let tmp: string;
  const output = multiclassModel().output;

  const sql = async <T extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
    (await db.pool.query<T>(text, values)).rows;
  const tableExists = async (runId: string) =>
    (await sql<{ t: string | null }>('SELECT to_regclass($1) AS t', [`prescore.predictions_r${runId}`]))[0]!.t !== null;
  const keptAsBase = async (runId: string) =>
    (await sql<{ k: boolean }>('SELECT kept_as_base AS k FROM prescore.runs WHERE id = $1', [runId]))[0]!.k;
  const masks = async (runId: string) =>
    Number((await sql<{ n: string }>('SELECT count(*) AS n FROM prescore.layer_masks WHERE run_id = $1', [runId]))[0]!.n);

  /** `prescore export --format csv` of (job, date): the keys in file order and the rows. */
  async function exportCsv(job: string, date: string): Promise<{ runId: string; keys: string[]; rows: Map<string, StoredRow> }> {
    const out = path.join(tmp, `${job}-${date}-${Math.random().toString(36).slice(2)}.csv`);
    const r = await cli(db, ['export', job, '--date', date, '--format', 'csv', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const [header, ...lines] = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    assert.equal(header, 'key,score,label,outputs');
    const rows = lines.map((line): StoredRow => {
      const m = /^([^,]*),([^,]*),([^,]*),"?([^"]*)"?$/.exec(line);
      assert.ok(m, line);
      return {
        key: m[1]!,
        score: m[2] === '' ? null : Number(m[2]),
        label: m[3] === '' ? null : m[3]!,
        outputs: m[4] === '' ? null : (JSON.parse(m[4]!) as number[]),
      };
    });
    const runId = (JSON.parse(r.stdout) as { runId: string }).runId;
    return { runId, keys: rows.map((x) => x.key), rows: new Map(rows.map((x) => [x.key, x])) };
  }

  function assertRows(got: Map<string, StoredRow>, want: Map<string, StoredRow>, what: string): void {
    assert.equal(got.size, want.size, `${what}: rows`);
    for (const [key, w] of want) assert.deepEqual(got.get(key), w, `${what}: key ${key}`);
  }

  /** Keys in byte order, as a file sorted by key COLLATE "C" lists them. */
  const sorted = (keys: Iterable<string>) => [...keys].sort();

  before(async () => {
    db = await createTestDb('layered_readers');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-layered-'));
    await registerModel(db, 'multi', 'multiclass');
    await registerModel(db, 'lin', 'linear-float32');
    // The same feature rows on every date: runs of any date store the same predictions, so a
    // run of one date is a faithful base for a layer of another.
    for (const date of [D1, D2, D3, D4]) await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date });
    await db.pool.query(
      `CREATE TABLE outc AS SELECT g::bigint AS cid, $1::date AS day, (abs(hashtext(g::text)) % 3 = 0) AS churned
         FROM generate_series(1, $2::int) g WHERE g % 7 <> 0`,
      [D1, ROWS],
    );
    writeJob(
      db,
      jobSpec('lay', 'multi@champion', 'feats', F, {
        output,
        keepRuns: 2,
        outcomes: { table: 'outc', key: 'cid', date: 'day', outcome: 'churned' },
      }),
    );
    writeJob(db, jobSpec('ret', 'lin@champion', 'feats', F, { keepRuns: 2 }));
    // Two published runs of lay D1 and D2 each (the older the base of the newer), one of ret D1 and D2.
    [a1, a2, r1, r2] = await Promise.all([
      runJob(db, 'lay', D1),
      runJob(db, 'lay', D2),
      runJob(db, 'ret', D1),
      runJob(db, 'ret', D2),
    ]);
    [b1, b2] = await Promise.all([runJob(db, 'lay', D1), runJob(db, 'lay', D2)]);
  });
  after(async () => {
    await db?.drop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  let a1: string;
  let b1: string;
  // lay D2: a2 full, b2 a layer on it (rescored keys scored higher, gone keys absent).
  let a2: string;
  let b2: string;
  let r1: string;
  let r2: string;
  let layered: Map<string, StoredRow>;

  test('export csv and parquet of a layered run hold its read-through rows in key order', async () => {
    const full = await storedRows(db, b2);
    const scores = await layerize(db, b2, a2, { rescore: ['3', '10', '250'], gone: ['7', '200'], bump: 0.5 });
    layered = expectedRows(full, scores);
    assert.equal(layered.size, ROWS - 2);
    assert.equal(layered.get('10')!.score, full.get('10')!.score! + 0.5);
    assert.ok((await storedRows(db, b2)).size < 10, 'the layer stores only its rescored keys');

    const out = path.join(tmp, 'lay.parquet');
    const [csv, r] = await Promise.all([
      exportCsv('lay', D2),
      cli(db, ['export', 'lay', '--date', D2, '--format', 'parquet', '--out', out, '--json']),
    ]);
    assert.equal(csv.runId, b2);
    assert.deepEqual(csv.keys, sorted(layered.keys()), 'csv: every key once, in key order');
    assertRows(csv.rows, layered, 'csv');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { rows: number }).rows, layered.size);
    const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(out) })) as StoredRow[];
    assert.deepEqual(
      rows.map((x) => x.key),
      sorted(layered.keys()),
    );
    assertRows(new Map(rows.map((x) => [x.key, { ...x }])), layered, 'parquet');
  });

  test('a bundle of a layered run holds the same rows as of a full run', async () => {
    const dir = path.join(tmp, 'lay-bundle');
    const r = await cli(db, ['export', 'lay', '--date', D2, '--out', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { runId: string; rows: number };
    assert.equal(manifest.runId, b2);
    assert.equal(manifest.rows, layered.size);
    const table = tableFromIPC(fs.readFileSync(path.join(dir, 'predictions.arrow')));
    const got = [...table].map((row) => {
      const x = row.toJSON() as { key: string; score: number; label: string; outputs: { toArray(): Float64Array } | null };
      return { key: x.key, score: x.score, label: x.label, outputs: x.outputs ? [...x.outputs.toArray()] : null };
    });
    assert.deepEqual(
      got.map((x) => x.key),
      sorted(layered.keys()),
    );
    assertRows(new Map(got.map((x) => [x.key, x])), layered, 'bundle');
  });

  test('evaluate over a layered run equals evaluate over the same run before it was layered', async () => {
    const evaluate = async () => {
      const r = await cli(db, ['evaluate', 'lay', '--from', D1, '--to', D1, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { runs: { runId: string }[]; rows: { matched: number }[] };
    };
    const before_ = await evaluate();
    assert.equal(before_.runs[0]!.runId, b1);
    assert.ok(before_.rows[0]!.matched > 200);
    // Rescored to the same scores: the run's predictions do not change, only where they are stored.
    await layerize(db, b1, a1, { rescore: ['1', '2', '50'], bump: 0 });
    assert.equal((await storedRows(db, b1)).size, 3);
    assertNear(await evaluate(), before_);
  });

  test('rollback to a layer serves it while its base is kept, and is refused once the base is gone', async () => {
    // A third run of lay D2: keepRuns 2 expires a2, which b2 still reads through to.
    const c2 = await runJob(db, 'lay', D2);
    assert.equal(await keptAsBase(a2), true);
    assert.equal(await tableExists(a2), true);
    const back = await cli(db, ['runs', 'rollback', 'lay', '--date', D2, '--json']);
    assert.equal(back.code, 0, back.stderr);
    assert.equal((JSON.parse(back.stdout) as { to: string }).to, b2);
    assertRows((await exportCsv('lay', D2)).rows, layered, 'after the rollback to the layer');
    const forward = await cli(db, ['runs', 'rollback', 'lay', '--to', c2]);
    assert.equal(forward.code, 0, forward.stderr);
    // The base's table lost (not something retention does while a layer needs it).
    await db.pool.query(`ALTER TABLE prescore.predictions DETACH PARTITION prescore.predictions_r${a2}`);
    await db.pool.query(`DROP TABLE prescore.predictions_r${a2}`);
    const [refused, refusedDefault] = await Promise.all([
      cli(db, ['runs', 'rollback', 'lay', '--to', b2]),
      cli(db, ['runs', 'rollback', 'lay', '--date', D2]),
    ]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.lastError,
      new RegExp(`run ${b2} stores only part of its predictions and reads the rest from run ${a2}`),
    );
    assert.equal(refusedDefault.code, 2, refusedDefault.stderr);
    assert.match(refusedDefault.lastError, /no kept run older than run/);
  });

  test('retention (by count, then by age) keeps the base a serving layer reads through to, and drops it with the layer', async () => {
    // ret: r1 serves D1, r2 serves D2 as a layer on r1.
    const full = await storedRows(db, r2);
    const want = expectedRows(full, await layerize(db, r2, r1, { rescore: ['4', '99'], gone: ['5'] }));
    writeJob(db, jobSpec('ret', 'lin@champion', 'feats', F, { keepRuns: 1 }));

    // A new run of D1: r1 expires, but the layer serving D2 still reads through to it.
    const r3 = await runJob(db, 'ret', D1);
    assert.equal(await keptAsBase(r1), true);
    assert.equal(await tableExists(r1), true);
    assertRows((await exportCsv('ret', D2)).rows, want, 'the layer after its base expired');

    // A new run of D2: the layer expires, and the base it kept goes with it.
    const r4 = await runJob(db, 'ret', D2);
    assert.equal(await tableExists(r2), false);
    assert.equal(await masks(r2), 0);
    assert.equal(await tableExists(r1), false, 'the kept base is dropped with its last layer');
    assert.equal(await tableExists(r3), true);
    assert.equal(await tableExists(r4), true);

    // Retention by age, the same way: r4 (D2) becomes a layer on r3 (D1).
    const full4 = await storedRows(db, r4);
    const want4 = expectedRows(full4, await layerize(db, r4, r3, { rescore: ['8'], gone: ['9', '10'], bump: 2 }));
    writeJob(db, jobSpec('ret', 'lin@champion', 'feats', F, { keepRuns: 1, retainDays: 1 }));
    // Publishing D3 ends D1 (older than D3 - 1 day): r3 stops serving but r4, serving D2, reads through to it.
    await runJob(db, 'ret', D3);
    assert.equal(await keptAsBase(r3), true);
    assert.equal(await tableExists(r3), true);
    const [after4, gone] = await Promise.all([
      exportCsv('ret', D2),
      cli(db, ['export', 'ret', '--date', D1, '--out', path.join(tmp, 'd1.csv')]),
    ]);
    assertRows(after4.rows, want4, 'the layer after its base date passed retention');
    assert.equal(gone.code, 2, 'D1 is no longer served');
    // Publishing D4 ends D2: the layer goes, and its base with it.
    const r6 = await runJob(db, 'ret', D4);
    assert.equal(await tableExists(r4), false);
    assert.equal(await masks(r4), 0);
    assert.equal(await tableExists(r3), false, 'the kept base is dropped with its last layer');
    assert.equal(await tableExists(r6), true);
  });
});
