import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { withTransaction } from '../src/db/pool.js';
import { claimDrop } from '../src/db/sql/runs.js';
import {
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
import { assertSame, published, run, type RunJson } from './incremental-helpers.js';

const DAY1 = '2026-11-01';
const DAY2 = '2026-11-02';
const DAY3 = '2026-11-03';
const ROWS = 3000;
const OLD = '2026-01-01 00:00:00+00';

/**
 * An incremental run of a job without challengers is a layer: it stores the rows it scored (and
 * those of the layer it started from) and reads the rest through to one full run, and what it
 * publishes is exactly what a full run of the same data publishes, night after night.
 */
describe('layered incremental runs', () => {
  let db: TestDb;
  const features = featureNames(4);
  const full = (name: string) => jobSpec(name, 'lin@champion', 'lay', features, { keepRuns: 3, onBadRow: 'reject' });
  before(async () => {
    db = await createTestDb('layered');
    await db.pool.query(
      `CREATE TABLE lay (id bigint NOT NULL, as_of date NOT NULL, f0 real, f1 real, f2 real, f3 real,
                         updated_at timestamptz DEFAULT '${OLD}', PRIMARY KEY (as_of, id))`,
    );
    await db.pool.query('CREATE INDEX lay_changed ON lay (as_of, updated_at) INCLUDE (id)');
    await db.pool.query(
      `INSERT INTO lay (id, as_of, f0, f1, f2, f3)
       SELECT g, $1, 2 * sin(g * 0.37), 2 * sin(g * 0.37 + 1.3), 2 * sin(g * 0.37 + 2.6), CASE WHEN g % 500 = 0 THEN NULL ELSE 2 * cos(g) END
         FROM generate_series(1, $2::int) g`,
      [DAY1, ROWS],
    );
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, full('lay-full'));
    writeJob(db, { ...full('lay-since'), incremental: { changedSince: 'updated_at' } });
    writeJob(db, { ...full('lay-hash'), incremental: { mode: 'hash' } });
  });
  after(async () => db.drop());

  /** The full job's run of `date`, and each incremental job's: the same rows, and the layers' shape. */
  async function night(date: string, expect: (r: RunJson, job: string) => void): Promise<Map<string, RunJson>> {
    const truth = await run(db, 'lay-full', date);
    const expected = await published(db, truth.id);
    const runs = new Map<string, RunJson>();
    for (const job of ['lay-since', 'lay-hash']) {
      const r = await run(db, job, date);
      assert.equal(r.rowsRead, truth.rowsRead, `${job} ${date}: rows read`);
      assert.equal(r.rowsRejected, truth.rowsRejected, `${job} ${date}: rows rejected`);
      assertSame(await published(db, r.id), expected, `${job} ${date} run ${r.id}`);
      expect(r, job);
      runs.set(job, r);
    }
    return runs;
  }

  async function own(runId: string): Promise<{ rows: number; masked: number; base: string | null }> {
    const { rows } = await db.pool.query<{ rows: number; masked: number; base: string | null }>(
      `SELECT (SELECT count(*)::int FROM prescore.predictions WHERE run_id = $1) AS rows,
              (SELECT count(*)::int FROM prescore.layer_masks WHERE run_id = $1) AS masked,
              (SELECT base_run_id::text FROM prescore.runs WHERE id = $1) AS base`,
      [runId],
    );
    return rows[0]!;
  }

  test('night after night a layer holds only what changed and publishes what a full run does', async () => {
    const day1 = await night(DAY1, (r) => assert.equal(r.incremental?.full, true));
    // Day 2: day 1 as it was, then 30 changed, one made bad and one bad made good, 20 gone, 25 new.
    await db.pool.query(`INSERT INTO lay SELECT id, $2, f0, f1, f2, f3, updated_at FROM lay WHERE as_of = $1`, [DAY1, DAY2]);
    await db.pool.query(`UPDATE lay SET f0 = -f0, updated_at = now() WHERE as_of = $1 AND id % 100 = 7`, [DAY2]);
    await db.pool.query(`UPDATE lay SET f2 = NULL, updated_at = now() WHERE as_of = $1 AND id = 11`, [DAY2]);
    await db.pool.query(`UPDATE lay SET f3 = 0.5, updated_at = NULL WHERE as_of = $1 AND id = 1000`, [DAY2]);
    await db.pool.query(`DELETE FROM lay WHERE as_of = $1 AND id % 150 = 1`, [DAY2]);
    await db.pool.query(
      `INSERT INTO lay (id, as_of, f0, f1, f2, f3, updated_at)
       SELECT g, $1, sin(g), cos(g), 0.1, -0.2, now() FROM generate_series($2::int, $2::int + 24) g`,
      [DAY2, ROWS + 1],
    );
    const day2 = await night(DAY2, (r, job) => {
      assert.equal(r.incremental?.full, false, job);
      assert.equal(r.incremental?.baseRunId, day1.get(job)!.id);
      assert.equal(r.incremental?.layerOn, day1.get(job)!.id, `${job}: a layer on day 1's run`);
      assert.equal(r.incremental?.changed, 30 + 2 + 25);
      assert.equal(r.incremental?.gone, 20);
    });
    for (const [job, r] of day2) {
      const o = await own(r.id);
      assert.equal(o.base, day1.get(job)!.id);
      // Its own table: the 31 changed it scored (one is now a reject) and the 25 new; its mask:
      // the 32 changed and 20 gone of day 1's predictions, less the key day 1 rejected.
      assert.equal(o.rows, 30 + 1 + 25, `${job}: rows in the layer's own table`);
      assert.equal(o.masked, 32 + 20 - 1, `${job}: masked keys`);
      assert.equal(r.incremental?.readThrough, r.rowsWritten - o.rows);
    }
    // A rerun of day 2 with 10 more changed: a layer on the same root, carrying day 2's layer.
    await db.pool.query(`UPDATE lay SET f1 = f1 + 1, updated_at = now() WHERE as_of = $1 AND id % 300 = 5`, [DAY2]);
    const rerun = await night(DAY2, (r, job) => {
      assert.equal(r.incremental?.baseRunId, day2.get(job)!.id);
      assert.equal(r.incremental?.layerOn, day1.get(job)!.id, `${job}: still on day 1's run`);
      assert.equal(r.incremental?.gone, 0);
    });
    for (const [job, r] of rerun) {
      const o = await own(r.id);
      assert.equal(o.rows, 56 + 10, `${job}: day 2's layer and the 10 rescored`);
      assert.equal(o.base, day1.get(job)!.id);
    }
    // Day 3: a new date from the layered rerun; no keys gone, so the counts alone say so.
    await db.pool.query(`INSERT INTO lay SELECT id, $2, f0, f1, f2, f3, updated_at FROM lay WHERE as_of = $1`, [DAY2, DAY3]);
    await db.pool.query(`UPDATE lay SET f0 = f0 * 0.5, updated_at = now() WHERE as_of = $1 AND id % 97 = 3`, [DAY3]);
    await night(DAY3, (r, job) => {
      assert.equal(r.incremental?.baseRunId, rerun.get(job)!.id);
      assert.equal(r.incremental?.layerOn, day1.get(job)!.id);
      assert.equal(r.incremental?.gone, 0);
    });
  });

  test('a change past a fifth of the rows stores all of them again, and the next night layers on that', async () => {
    await db.pool.query(`UPDATE lay SET f2 = f2 - 1, updated_at = now() WHERE as_of = $1 AND id % 4 = 0`, [DAY3]);
    const big = await night(DAY3, (r, job) => {
      assert.equal(r.incremental?.full, false, job);
      assert.equal(r.incremental?.layerOn, undefined, `${job}: 25% changed is no layer`);
    });
    for (const [job, r] of big) {
      const o = await own(r.id);
      assert.equal(o.base, null, job);
      assert.equal(o.rows, r.rowsWritten, `${job}: holds every prediction`);
    }
    await db.pool.query(`UPDATE lay SET f3 = 1, updated_at = now() WHERE as_of = $1 AND id % 250 = 9`, [DAY3]);
    await night(DAY3, (r, job) => assert.equal(r.incremental?.layerOn, big.get(job)!.id, job));
  });

  test('retention and a plan on the same root: the root stays for the new layer, or the plan does not use it', async () => {
    writeJob(db, { ...full('lay-race'), incremental: { changedSince: 'updated_at' } });
    const root = await run(db, 'lay-race', DAY2);
    await db.pool.query(`UPDATE lay SET f0 = f0 + 1, updated_at = now() WHERE as_of = $1 AND id % 500 = 17`, [DAY2]);
    // The plan holds the root's row, then waits for its table; retention's claim comes meanwhile.
    const table = `predictions_r${root.id}`;
    const lock = await holdLock(db.pool, `LOCK TABLE prescore.${table} IN ACCESS EXCLUSIVE MODE`);
    const plan = startCli(db, ['run', 'lay-race', '--date', DAY2, '--json']);
    let claim: Promise<{ layers: string[]; serving: boolean }> | undefined;
    let settled = false;
    try {
      await waitFor(
        'the plan to wait for the root table',
        async () =>
          (
            await db.pool.query(
              `SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE NOT l.granted AND c.relname = $1 AND c.relnamespace = 'prescore'::regnamespace`,
              [table],
            )
          ).rowCount! > 0,
        20_000,
      );
      claim = withTransaction(db.pool, (client) => claimDrop(client, root.id));
      void claim.finally(() => (settled = true));
      await sleep(300);
      assert.equal(settled, false, "retention's claim waits for the plan holding the root");
    } finally {
      await lock.release();
    }
    const { layers } = await claim!;
    const done = await plan.done;
    assert.equal(done.code, 0, done.stderr);
    const layer = JSON.parse(done.stdout) as RunJson;
    assert.equal(layer.incremental?.layerOn, root.id);
    assert.deepEqual(layers, [layer.id], 'the claim saw the layer the plan made, and kept the root');
    const { rows } = await db.pool.query<{ dropped: boolean }>(
      'SELECT dropped_at IS NOT NULL AS dropped FROM prescore.runs WHERE id = $1',
      [root.id],
    );
    assert.equal(rows[0]!.dropped, false);
    assert.equal((await published(db, layer.id)).size, layer.rowsRead);

    // The other order: a claimed root (its tables about to go) is no base; the run is full.
    await db.pool.query('UPDATE prescore.runs SET base_run_id = NULL WHERE id = $1', [layer.id]);
    assert.deepEqual(await withTransaction(db.pool, (client) => claimDrop(client, root.id)), { layers: [], serving: false });
    await db.pool.query('UPDATE prescore.runs SET base_run_id = $2 WHERE id = $1', [layer.id, root.id]);
    const again = await run(db, 'lay-race', DAY2);
    assert.equal(again.incremental?.full, true);
    assert.match(String((again.incremental as { reason?: string }).reason), new RegExp(`run ${layer.id} .* dropped`));
  });
});
