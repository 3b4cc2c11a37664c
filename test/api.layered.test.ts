import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { carryLate } from '../src/db/sql/late.js';
import { request, runJob, startApi, type Item, type RunningApi } from './api-helpers.js';
import { createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';
import { layerize } from './layer-helpers.js';

const D = '2026-11-20';
const JOB = 'layered';
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));
const RESCORED = range(10, 29);
const GONE = range(30, 49);
/** Keys the newer run has and the older lacks: they stay in the layer. */
const ADDED = range(401, 420);
/** Rejected by both runs (NaN feature): the layer's rejects answer it. */
const REJECTED = '7';
const REASON = 'NaN in column f1';

type Missing = { error?: string; rejected?: string };
type Batch = { predictions: Item[]; missing: string[] };

/**
 * A layered run (migration 012) answers for every read path of the API as the union of its
 * layer and its base minus its mask: single GET, POST of many keys (the lookup's bulk lane),
 * and the run's copy in memory.
 */
describe('a layered run', () => {
  let db: TestDb;
  let fromDb: RunningApi;
  let fromMemory: RunningApi;
  let base: string;
  let layer: string;
  let expected: Map<string, number | null>;
  let baseScores: Map<string, number | null>;
  const keys = [...range(1, 420), '99999'];

  before(async () => {
    db = await createTestDb('api_layered');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 400, features: 4, date: D });
    await db.pool.query(`UPDATE feats SET f1 = 'NaN' WHERE id = $1`, [REJECTED]);
    writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { keepRuns: 2 }));
    base = await runJob(db, JOB, D);
    await seedFeatures(db.pool, 'feats', { rows: 20, features: 4, date: D, keyExpr: 'g + 400' });
    layer = await runJob(db, JOB, D);
    const { rows } = await db.pool.query<{ key: string; score: number | null }>(
      'SELECT key, score FROM prescore.predictions WHERE run_id = $1',
      [base],
    );
    baseScores = new Map(rows.map((r) => [r.key, r.score]));
    expected = await layerize(db, layer, base, { rescore: RESCORED, gone: GONE });
    // Started after the run became a layer: neither has seen it whole.
    fromDb = await startApi(db);
    // Small pages: the load merges layer and base over several.
    fromMemory = await startApi(db, { cacheBytes: 16 * 1024 * 1024, cachePageRows: 64 });
  });
  after(async () => {
    await Promise.all([fromDb?.close(), fromMemory?.close()]);
    await db?.drop();
  });

  test('the fixture: rescored, gone, added and read-through keys, and a reject', async () => {
    const own = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM prescore.predictions WHERE run_id = $1', [layer]);
    assert.equal(Number(own.rows[0]!.n), RESCORED.length + ADDED.length, 'the layer holds only what differs');
    for (const k of RESCORED) assert.equal(expected.get(k), baseScores.get(k)! + 1);
    for (const k of GONE) assert.ok(!expected.has(k) && baseScores.has(k));
    for (const k of ADDED) assert.ok(expected.has(k) && !baseScores.has(k));
    assert.ok(!expected.has(REJECTED) && !baseScores.has(REJECTED));
    assert.equal(expected.size, 420 - GONE.length - 1);
  });

  /** Some keys of each kind, one GET each, checked against what layerize says a reader sees. */
  async function checkGets(server: RunningApi): Promise<void> {
    const some = (ks: string[]) => ks.slice(0, 4);
    const sample = [...some(RESCORED), ...some(GONE), ...some(ADDED), '1', '2', '100', '400', REJECTED, '99999'];
    for (const key of sample) {
      const r = await request<Item & Missing>(server.base, `/v1/predictions/${JOB}/${key}`);
      if (expected.has(key)) {
        assert.equal(r.status, 200, `${key}: ${r.text}`);
        assert.equal(r.body.runId, layer, key);
        assert.equal(r.body.score, expected.get(key), key);
      } else {
        assert.equal(r.status, 404, `${key}: ${r.text}`);
        assert.equal(r.body.rejected, key === REJECTED ? REASON : undefined, key);
      }
    }
  }

  /** All keys in one POST (more than the point lane takes, more than one lookup query holds). */
  async function checkPost(server: RunningApi): Promise<void> {
    const r = await request<Batch>(server.base, `/v1/predictions/${JOB}`, { body: { keys } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      new Map(r.body.predictions.map((p) => [p.key, p.score])),
      new Map(keys.filter((k) => expected.has(k)).map((k) => [k, expected.get(k)])),
    );
    assert.ok(r.body.predictions.every((p) => p.runId === layer));
    assert.deepEqual(r.body.missing, [REJECTED, ...GONE, '99999']);
  }

  test('from PostgreSQL: GET and POST read through to the base, except the masked keys', async () => {
    await checkGets(fromDb);
    await checkPost(fromDb);
  });

  test('from memory: the run loads with what it reads through, and answers the same', async () => {
    const pointer = fromMemory.api.pointers.servingRun(layer);
    assert.equal(pointer?.baseRunId, base, 'the pointer carries the base');
    fromMemory.api.cache.want(pointer);
    const started = Date.now();
    while (!fromMemory.api.cache.has(layer)) {
      assert.ok(Date.now() - started < 10_000, 'the layered run did not load into memory within 10 s');
      await sleep(20);
    }
    assert.equal(fromMemory.api.cache.peek(layer)!.rows, expected.size);
    const hits = async () =>
      Number(/^prescore_api_cache_hits_total (\S+)$/m.exec((await request(fromMemory.base, '/metrics')).text)?.[1] ?? NaN);
    const before = await hits();
    await checkGets(fromMemory);
    await checkPost(fromMemory);
    assert.ok((await hits()) - before >= keys.length, 'memory answered');
  });

  test('a publish carries late rows only for the keys the layered run lacks, read-through included', async () => {
    const late = ['100', RESCORED[0]!, GONE[0]!, REJECTED, ADDED[0]!, '99999'];
    await db.pool.query(
      `INSERT INTO prescore.late_predictions (run_id, key, score, model_name, model_version)
       SELECT $1, k, 0.5, model_name, model_version FROM prescore.runs, unnest($2::text[]) k WHERE id = $1`,
      [base, late],
    );
    const n = await carryLate(db.pool, base, { runId: layer, baseRunId: base });
    const { rows } = await db.pool.query<{ key: string }>(
      'SELECT key FROM prescore.late_predictions WHERE run_id = $1 ORDER BY key',
      [layer],
    );
    await db.pool.query('DELETE FROM prescore.late_predictions WHERE run_id = ANY ($1::bigint[])', [[base, layer]]);
    const carried = rows.map((r) => r.key);
    assert.equal(n, carried.length);
    // '100' reads through to the base, the rescored and added keys are the layer's, 7 is rejected.
    assert.deepEqual(carried, [GONE[0], '99999']);
  });
});
