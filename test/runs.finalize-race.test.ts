import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { listChunks } from '../src/db/sql/chunks.js';
import { resolveJob } from '../src/definitions/check.js';
import { loadJob } from '../src/definitions/load.js';
import { InferencePool, sharedBytes } from '../src/inference/pool.js';
import { silentLogger } from '../src/log.js';
import { loadModelBytes } from '../src/models/registry.js';
import { executeChunk } from '../src/runs/chunk.js';
import { finalizeRun } from '../src/runs/finalize.js';
import { planRun } from '../src/runs/plan.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  servedPredictions,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-16';

/** Two finalizes of the same run at once (a redelivered finalize job): one publishes, the other returns quietly. */
describe('racing finalizes', () => {
  let db: TestDb;
  let inference: InferencePool;
  before(async () => {
    db = await createTestDb('finalize_race');
    await seedFeatures(db.pool, 'feats', { rows: 3000, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('race', 'lin@champion', 'feats', featureNames(4)));
    inference = new InferencePool(1);
  });
  after(async () => {
    await inference?.close();
    await db?.drop();
  });

  test('both resolve, the run is published once and serves every row', async () => {
    const job = await resolveJob(db.pool, loadJob(db.jobsDir, 'race'));
    const { runId } = await planRun(db.pool, job, DATE, 'test');
    const model = sharedBytes(await loadModelBytes(db.pool, job.model.name, job.model.version));
    for (const c of await listChunks(db.pool, runId)) {
      const r = await executeChunk(db.pool, inference, { runId, date: DATE, job, model, chunkNo: c.chunkNo, lo: c.lo, hi: c.hi });
      assert.equal(r.status, 'done');
    }
    const results = await Promise.allSettled([
      finalizeRun(db.pool, runId, silentLogger),
      finalizeRun(db.pool, runId, silentLogger),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled'],
      JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))),
    );
    const served = await servedPredictions(db.pool, 'race', DATE);
    assert.equal(served.runId, runId);
    assert.equal(served.rows.size, 3000);
    const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM prescore.runs WHERE id = $1::bigint', [runId]);
    assert.equal(rows[0]!.status, 'published');
    // A third, late finalize is a no-op too.
    await finalizeRun(db.pool, runId, silentLogger);
  });

  test('a key twice in the source is still reported as such at finalize, naming the key', async () => {
    writeJob(db, {
      name: 'dups',
      model: 'lin@champion',
      source: {
        query: 'SELECT id, as_of, f0, f1, f2, f3 FROM feats UNION ALL SELECT id, as_of, f0, f1, f2, f3 FROM feats WHERE id = 5',
        key: 'id',
        partition: 'as_of',
        features: featureNames(4),
      },
      chunkRows: 1000,
    });
    const r = await cli(db, ['run', 'dups', '--date', DATE]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.lastError, /key 5 appears more than once on 2026-11-16; the source key must be unique per date/);
    assert.equal((await servedPredictions(db.pool, 'dups', DATE)).runId, null);
  });
});
