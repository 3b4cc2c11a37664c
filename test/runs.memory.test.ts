import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../bench/support.js';
import { createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

/** Invariant 6: peak memory follows the chunk size, not the table size. */
describe('bounded memory', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('memory');
    await seedFeatures(db.pool, 'feats', { rows: 50_000, features: 32, date: '2026-11-10' });
    await seedFeatures(db.pool, 'feats', { rows: 500_000, features: 32, date: '2026-11-11' });
    await registerModel(db, 'mlp', 'mlp');
    writeJob(db, jobSpec('mem', 'mlp@champion', 'feats', featureNames(32), { chunkRows: 5000 }));
  });
  after(async () => db?.drop());

  test('peak RSS of prescore run at 10x the rows stays within 1.5x', { timeout: 180_000 }, async (t) => {
    // The old-generation heap capped at 96 MiB: V8 otherwise grows its heap because it may,
    // which moved the peak by ~100 MiB from run to run; a working set that grew with the table
    // would not fit and the 10x run would fail.
    const env = {
      DATABASE_URL: db.url,
      PRESCORE_JOBS_DIR: db.jobsDir,
      PRESCORE_LOG_LEVEL: 'warn',
      NODE_OPTIONS: '--max-old-space-size=96',
    };
    const small = await runCli(['run', 'mem', '--date', '2026-11-10'], env);
    assert.equal(small.code, 0, small.stderr);
    const big = await runCli(['run', 'mem', '--date', '2026-11-11'], env);
    assert.equal(big.code, 0, big.stderr);
    const best = big.peakRssMiB;
    const ratio = best / small.peakRssMiB;
    t.diagnostic(
      `peak RSS ${small.peakRssMiB.toFixed(0)} MiB at 50,000 rows, ${best.toFixed(0)} MiB at 500,000: ${ratio.toFixed(2)}x`,
    );
    assert.ok(small.peakRssMiB > 50, `measured ${small.peakRssMiB} MiB`);
    assert.ok(
      ratio <= 1.5,
      `peak RSS ${best.toFixed(0)} MiB at 500,000 rows vs ${small.peakRssMiB.toFixed(0)} MiB at 50,000: ${ratio.toFixed(2)}x`,
    );
  });
});
