import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { partitionName } from '../src/db/sql/partitions.js';
import {
  API_POOL_NAME,
  request,
  runJob,
  startApi,
  storedRows,
  type Item,
  type RunningApi,
  type StoredRow,
} from './api-helpers.js';
import { cli, createTestDb, featureNames, jobSpec, seedFeatures, writeJob, type TestDb, registerModel } from './helpers.js';

const D1 = '2026-11-20';
const D2 = '2026-11-21';
const ROWS = 2000;

interface Seen {
  at: number;
  loop: number;
  status: number;
  items: Item[];
  text: string;
}

/**
 * Publishing a run switches the API to it within a second, with no failed or mixed answer:
 * each response comes from exactly one run, the old one or the new one.
 */
describe('publish under load', () => {
  let db: TestDb;
  let server: RunningApi;
  let run1: string;
  before(async () => {
    db = await createTestDb('api_switch');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D1 });
    // keepRuns 1: the replaced run's partition is detached and dropped right after the publish.
    writeJob(db, jobSpec('switch', 'lin@champion', 'feats', featureNames(4), { keepRuns: 1 }));
    run1 = await runJob(db, 'switch', D1);
    server = await startApi(db);
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  async function publishedAt(runId: string): Promise<number> {
    const { rows } = await db.pool.query<{ t: Date }>('SELECT published_at AS t FROM prescore.runs WHERE id = $1', [runId]);
    return rows[0]!.t.getTime();
  }

  test('GETs and POSTs hammering through two publishes: all 200, consistent, new runs seen within 1 s', async () => {
    const oracle = new Map<string, Map<string, StoredRow>>([[run1, await storedRows(db, run1)]]);
    const seen: Seen[] = [];
    let stop = false;
    const key = () => String(1 + Math.floor(Math.random() * ROWS));
    const loop = async (n: number, kind: 'get' | 'post') => {
      while (!stop) {
        if (kind === 'get') {
          const r = await request<Item>(server.base, `/v1/predictions/switch/${key()}`);
          seen.push({ at: Date.now(), loop: n, status: r.status, items: r.status === 200 ? [r.body] : [], text: r.text });
        } else {
          const r = await request<{ predictions: Item[]; missing: string[] }>(server.base, '/v1/predictions/switch', {
            body: { keys: Array.from({ length: 20 }, key) },
          });
          const ok = r.status === 200 && r.body.missing.length === 0;
          seen.push({ at: Date.now(), loop: n, status: ok ? 200 : r.status, items: ok ? r.body.predictions : [], text: r.text });
        }
      }
    };
    const loops = [...Array.from({ length: 6 }, (_, i) => loop(i, 'get')), loop(6, 'post'), loop(7, 'post')];

    await sleep(400);
    // A new run of the same date, from changed features: other scores for the same keys.
    await db.pool.query('UPDATE feats SET f0 = f0 + 1 WHERE as_of = $1', [D1]);
    const run2 = await runJob(db, 'switch', D1);
    await sleep(300);
    // A newer date: requests without asOf move to it.
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D2, salt: 3 });
    const run3 = await runJob(db, 'switch', D2);
    await sleep(700);
    stop = true;
    await Promise.all(loops);

    oracle.set(run2, await storedRows(db, run2));
    oracle.set(run3, await storedRows(db, run3));
    const { rows: dropped } = await db.pool.query('SELECT to_regclass($1) AS t', [`prescore.${partitionName(run1)}`]);
    assert.equal(dropped[0].t, null, 'run 1 should have been dropped (keepRuns 1), exercising the race');
    const dates: Record<string, string> = { [run1]: D1, [run2]: D1, [run3]: D2 };

    const failed = seen.filter((s) => s.status !== 200);
    assert.equal(failed.length, 0, `non-200 responses: ${failed.slice(0, 3).map((s) => `${s.status} ${s.text}`)}`);
    const order = [run1, run2, run3];
    const last = new Map<number, number>();
    for (const s of seen) {
      const runIds = new Set(s.items.map((i) => i.runId));
      assert.equal(runIds.size, 1, `one response mixed runs ${[...runIds]}`);
      const runId = s.items[0]!.runId;
      for (const item of s.items) {
        assert.ok(oracle.has(item.runId), `unknown run ${item.runId}`);
        assert.equal(item.asOf, dates[runId]);
        assert.equal(item.score, oracle.get(runId)!.get(item.key)!.score, `run ${runId} key ${item.key}`);
      }
      // One client never steps back to an older run.
      const index = order.indexOf(runId);
      assert.ok(index >= (last.get(s.loop) ?? 0), `loop ${s.loop} went back to run ${runId}`);
      last.set(s.loop, index);
    }
    for (const runId of [run2, run3]) {
      const first = seen.find((s) => s.items[0]!.runId === runId);
      assert.ok(first, `run ${runId} was never served`);
      const delay = first.at - (await publishedAt(runId));
      assert.ok(delay < 1000, `run ${runId} served ${delay} ms after its publish`);
    }
    assert.ok(seen.length > 200, `only ${seen.length} responses`);
  });

  /**
   * Publishes a copy of `oldRun` with every score + `delta` the way finalize does (partition,
   * index, attach, pointer swap) but WITHOUT a notification, so the API does not hear of it.
   */
  async function silentPublish(oldRun: string, delta: number, options: { drop: boolean }): Promise<string> {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO prescore.runs (job, date, status, trigger, model_name, model_version, model_sha256, spec, published_at, finished_at)
         SELECT job, date, 'published', 'test', model_name, model_version, model_sha256, spec, now(), now()
           FROM prescore.runs WHERE id = $1 RETURNING id::text`,
        [oldRun],
      );
      const runId = rows[0]!.id;
      const table = `prescore.${partitionName(runId)}`;
      await client.query(`CREATE TABLE ${table} (LIKE prescore.predictions INCLUDING DEFAULTS, CHECK (run_id = ${runId}))`);
      await client.query(
        `INSERT INTO ${table} SELECT ${runId}, key, score + ${delta}, label, outputs FROM prescore.predictions WHERE run_id = $1`,
        [oldRun],
      );
      await client.query(`CREATE UNIQUE INDEX ON ${table} (key)`);
      await client.query(`ALTER TABLE prescore.predictions ATTACH PARTITION ${table} FOR VALUES IN (${runId})`);
      await client.query(`UPDATE prescore.serving SET run_id = $1, published_at = now() WHERE run_id = $2`, [runId, oldRun]);
      await client.query(`UPDATE prescore.runs SET status = 'superseded' WHERE id = $1`, [oldRun]);
      if (options.drop) {
        await client.query(`ALTER TABLE prescore.predictions DETACH PARTITION prescore.${partitionName(oldRun)}`);
        await client.query(`DROP TABLE prescore.${partitionName(oldRun)}`);
      }
      await client.query('COMMIT');
      return runId;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
  }

  const servingRun = async (date: string) =>
    (
      await db.pool.query<{ id: string }>('SELECT run_id::text AS id FROM prescore.serving WHERE job = $1 AND date = $2', [
        'switch',
        date,
      ])
    ).rows[0]!.id;

  test('a run replaced and dropped before the server hears of it: answered from the new run, not as missing', async () => {
    const old = await servingRun(D2);
    const before = await request<Item>(server.base, '/v1/predictions/switch/42');
    assert.equal(before.body.runId, old);
    const fresh = await silentPublish(old, 1000, { drop: true });
    const oracle = await storedRows(db, fresh);
    const get = await request<Item>(server.base, '/v1/predictions/switch/42');
    assert.equal(get.status, 200, get.text);
    assert.equal(get.body.runId, fresh);
    assert.equal(get.body.score, oracle.get('42')!.score);
    assert.equal(get.body.score, before.body.score! + 1000);
    const post = await request<{ predictions: Item[]; missing: string[] }>(server.base, '/v1/predictions/switch', {
      body: { keys: ['1', '2', 'nope'] },
    });
    assert.equal(post.status, 200, post.text);
    assert.deepEqual(post.body.missing, ['nope']);
    assert.deepEqual(
      post.body.predictions.map((p) => [p.runId, p.score]),
      ['1', '2'].map((k) => [fresh, oracle.get(k)!.score]),
    );
  });

  test('the LISTEN connection is re-established after it drops, and the map reloaded in full', async () => {
    const listenName = `${API_POOL_NAME}-listen`;
    const pids = async () =>
      (
        await db.pool.query<{ pid: number }>(
          'SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
          [listenName],
        )
      ).rows.map((r) => r.pid);
    const [pid] = await pids();
    assert.ok(pid, 'the API should hold a LISTEN connection');
    const old = await servingRun(D1);
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    // Published while nobody listens and never announced: only the reload after reconnecting finds it.
    const fresh = await silentPublish(old, 2000, { drop: false });
    const started = Date.now();
    let runId = '';
    while (Date.now() - started < 3000) {
      runId = (await request<Item>(server.base, `/v1/predictions/switch/7?asOf=${D1}`)).body.runId;
      if (runId === fresh) break;
      await sleep(20);
    }
    assert.equal(runId, fresh, 'the silently published run should be served after the reconnect');
    const now = await pids();
    assert.equal(now.length, 1);
    assert.notEqual(now[0], pid);
    assert.equal(server.api.listener.connected, true);
    // And notifications flow again: a real publish is served within a second.
    await db.pool.query('UPDATE feats SET f1 = f1 + 1 WHERE as_of = $1', [D1]);
    const run = await cli(db, ['run', 'switch', '--date', D1, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const next = (JSON.parse(run.stdout) as { id: string }).id;
    await sleep(1000 - (Date.now() - (await publishedAt(next))));
    assert.equal((await request<Item>(server.base, `/v1/predictions/switch/7?asOf=${D1}`)).body.runId, next);
  });
});
