import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import autocannon from 'autocannon';
import { withTransaction } from '../src/db/pool.js';
import { partitionTable } from '../src/db/sql/partitions.js';
import { claimDrop } from '../src/db/sql/runs.js';
import { packageRoot } from '../src/paths.js';
import { runJob, storedRows, type Item, type StoredRow } from './api-helpers.js';
import { cli, createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

const JOB = 'rb-job';
const D = '2026-03-02';
const ROWS = 300;
const KEYS = ['3', '17', '42', '99', '150', '151', '200', '250', '299', '300'];

/** `prescore serve` as a real process on a free port; resolves once it listens. */
async function serve(db: TestDb): Promise<{ base: string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [path.join(packageRoot, 'bin', 'prescore.js'), 'serve', '--port', '0'], {
    env: { ...process.env, DATABASE_URL: db.url, PRESCORE_JOBS_DIR: db.jobsDir, PRESCORE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  return {
    base,
    stop: async () => {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    },
  };
}

describe('runs rollback', () => {
  let db: TestDb;
  let runA: string;
  let runB: string;
  const serving = async () =>
    (
      await db.pool.query<{ id: string }>('SELECT run_id::text AS id FROM prescore.serving WHERE job = $1 AND date = $2', [
        JOB,
        D,
      ])
    ).rows[0]?.id;
  const rollbacks = async () => Number((await db.pool.query('SELECT count(*) AS n FROM prescore.rollbacks')).rows[0].n);

  before(async () => {
    db = await createTestDb('rollback');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D });
    writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { keepRuns: 2 }));
    writeJob(db, jobSpec('rb-other', 'lin@champion', 'feats', featureNames(4)));
    runA = await runJob(db, JOB, D);
    await db.pool.query('UPDATE feats SET f0 = f0 + 1 WHERE as_of = $1', [D]);
    runB = await runJob(db, JOB, D);
  });
  after(async () => {
    await db?.drop();
  });

  test('refused with the reason and nothing changed: no published date, unknown run, other job, unpublished run, bad flags', async () => {
    // A failed run of this job and a published-looking run of another job, straight in the ledger.
    const { rows } = await db.pool.query<{ failed: string; other: string }>(
      `WITH f AS (INSERT INTO prescore.runs (job, date, status, model_name, model_version, model_sha256, spec)
                  SELECT job, date, 'failed', model_name, model_version, model_sha256, spec FROM prescore.runs WHERE id = $1
                  RETURNING id),
            o AS (INSERT INTO prescore.runs (job, date, status, model_name, model_version, model_sha256, spec)
                  SELECT 'rb-other', date, 'superseded', model_name, model_version, model_sha256, spec FROM prescore.runs WHERE id = $1
                  RETURNING id)
       SELECT (SELECT id::text FROM f) AS failed, (SELECT id::text FROM o) AS other`,
      [runA],
    );
    const { failed, other } = rows[0]!;
    const cases: [string[], RegExp][] = [
      [['rb-other'], /job rb-other has no published date: nothing to roll back/],
      [[JOB, '--date', '2026-03-01'], /job rb-job has no run serving 2026-03-01: nothing to roll back/],
      [[JOB, '--to', '999999'], /run 999999 does not exist/],
      [[JOB, '--to', other], new RegExp(`run ${other} is a run of job rb-other, not rb-job`)],
      [[JOB, '--to', failed], new RegExp(`run ${failed} is failed: only a run that was published can serve rb-job ${D} again`)],
      [[JOB, '--to', runA, '--date', '2026-03-01'], new RegExp(`run ${runA} scored rb-job ${D}, not 2026-03-01`)],
      [[JOB, '--date', '2026-02-30'], /--date "2026-02-30" is not a calendar date/],
      [[JOB, '--to', 'x1'], /run id must be a positive whole number/],
      [['Bad Name'], /job "Bad Name" must match/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(db, ['runs', 'rollback', ...args])));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i]![0].join(' ')}: ${r.stderr}`);
      assert.match(r.lastError, cases[i]![1]);
    });
    assert.equal(await serving(), runB);
    assert.equal(await rollbacks(), 0);
  });

  test('under load (autocannon, 50 connections): no failed answer, none mixing runs, the old run served within 1 s', async (t) => {
    const oracle = new Map<string, Map<string, StoredRow>>([
      [runA, await storedRows(db, runA)],
      [runB, await storedRows(db, runB)],
    ]);
    for (const k of KEYS) assert.notEqual(oracle.get(runA)!.get(k)!.score, oracle.get(runB)!.get(k)!.score);
    const server = await serve(db);
    const seen: { at: number; runId: string }[] = [];
    const bad: string[] = [];
    const check = (items: Item[], body: string) => {
      const runs = new Set(items.map((i) => i.runId));
      if (runs.size !== 1) return void bad.push(`mixed runs ${[...runs]}: ${body.slice(0, 200)}`);
      const runId = items[0]!.runId;
      const rows = oracle.get(runId);
      if (!rows) return void bad.push(`unknown run ${runId}`);
      for (const i of items) if (i.score !== rows.get(i.key)!.score) bad.push(`run ${runId} key ${i.key}: score ${i.score}`);
      seen.push({ at: Date.now(), runId });
    };
    let rolledBack: { at: string; from: string; to: string; by: string } | undefined;
    try {
      const load = autocannon({
        url: server.base,
        connections: 50,
        duration: 3,
        requests: [
          {
            method: 'POST',
            path: `/v1/predictions/${JOB}`,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ keys: KEYS }),
            onResponse: (status, body) => {
              if (status !== 200) return void bad.push(`POST ${status} ${body}`);
              const b = JSON.parse(body) as { predictions: Item[]; missing: string[] };
              if (b.missing.length > 0 || b.predictions.length !== KEYS.length) bad.push(`missing ${b.missing.join(',')}`);
              check(b.predictions, body);
            },
          },
          {
            method: 'GET',
            path: `/v1/predictions/${JOB}/42`,
            onResponse: (status, body) => {
              if (status !== 200) return void bad.push(`GET ${status} ${body}`);
              check([JSON.parse(body) as Item], body);
            },
          },
        ],
      });
      await new Promise((r) => setTimeout(r, 1200));
      const r = await cli(db, ['runs', 'rollback', JOB, '--by', 'ana', '--reason', 'bad upstream join', '--json']);
      assert.equal(r.code, 0, r.stderr);
      rolledBack = JSON.parse(r.stdout) as typeof rolledBack;
      const result = await load;
      assert.equal(result.errors, 0, 'connection errors');
      assert.equal(result.timeouts, 0, 'timeouts');
      assert.equal(result.non2xx, 0, `non-2xx: ${bad.slice(0, 3).join('; ')}`);
      assert.ok(result['2xx'] > 500, `only ${result['2xx']} answers`);
      t.diagnostic(`${result['2xx']} answers in ${result.duration} s, p99 ${result.latency.p99} ms`);
    } finally {
      await server.stop();
    }
    assert.deepEqual(bad.slice(0, 5), []);
    assert.equal(rolledBack!.from, runB);
    assert.equal(rolledBack!.to, runA);
    assert.equal(rolledBack!.by, 'ana');
    assert.equal(await serving(), runA);
    // B before the rollback, A after it: the first A answer came within a second of the commit.
    const firstA = seen.findIndex((s) => s.runId === runA);
    assert.ok(firstA > 0 && seen[0]!.runId === runB, 'run B served first, then run A');
    t.diagnostic(`first answer from run ${runA} ${seen[firstA]!.at - Date.parse(rolledBack!.at)} ms after the rollback's commit`);
    assert.ok(
      seen[firstA]!.at - Date.parse(rolledBack!.at) < 1000,
      `run A served ${seen[firstA]!.at - Date.parse(rolledBack!.at)} ms late`,
    );
    assert.equal(seen[seen.length - 1]!.runId, runA);
    const states = await db.pool.query<{ id: string; status: string; rolled: boolean }>(
      'SELECT id::text, status, rolled_back_at IS NOT NULL AS rolled FROM prescore.runs WHERE id = ANY ($1::bigint[]) ORDER BY id',
      [[runA, runB]],
    );
    assert.deepEqual(states.rows, [
      { id: runA, status: 'published', rolled: false },
      { id: runB, status: 'superseded', rolled: true },
    ]);
  });

  test('no older kept run: exit 2, nothing changed; --to the serving run is a no-op; runs list marks the serving run', async () => {
    const again = await cli(db, ['runs', 'rollback', JOB]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(
      again.lastError,
      new RegExp(`no kept run older than run ${runA}, which serves it, to roll back to.*nothing changed`),
    );
    const same = await cli(db, ['runs', 'rollback', JOB, '--to', runA]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, new RegExp(`run ${runA} already serves rb-job ${D}; nothing changed`));
    assert.equal(await rollbacks(), 1);
    const list = await cli(db, ['runs', 'list', '--job', JOB, '--json']);
    const runs = JSON.parse(list.stdout) as { id: string; status: string; serving: boolean }[];
    assert.deepEqual(
      runs.filter((r) => r.id === runA || r.id === runB).map((r) => [r.id, r.status, r.serving]),
      [
        [runB, 'superseded', false],
        [runA, 'published', true],
      ],
    );
    const table = await cli(db, ['runs', 'list', '--job', JOB]);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0]!, /^RUN\s+JOB\s+DATE\s+SERVING\s+STATUS/);
    assert.match(
      lines.find((l) => l.startsWith(`${runA} `))!,
      new RegExp(`${D}\\s+\\*\\s+published`),
    );
  });

  test('a later publish serves the new run; retention drops the run rolled back from, keeps the one rolled back to', async () => {
    await db.pool.query('UPDATE feats SET f1 = f1 + 1 WHERE as_of = $1', [D]);
    const runC = await runJob(db, JOB, D);
    assert.equal(await serving(), runC);
    const kept = async (id: string) =>
      (await db.pool.query('SELECT to_regclass($1) AS t', [partitionTable(id)])).rows[0].t !== null;
    assert.equal(await kept(runA), true, 'the run rolled back to is kept (keepRuns 2)');
    assert.equal(await kept(runB), false, 'the run rolled back from is dropped first');
    const dropped = await cli(db, ['runs', 'rollback', JOB, '--to', runB]);
    assert.equal(dropped.code, 2);
    assert.match(dropped.lastError, new RegExp(`run ${runB}'s predictions were dropped by retention`));
    assert.equal(await serving(), runC);
    const back = await cli(db, ['runs', 'rollback', JOB, '--date', D, '--json']);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual((({ from, to }) => ({ from, to }))(JSON.parse(back.stdout) as { from: string; to: string }), {
      from: runC,
      to: runA,
    });
    const history = JSON.parse((await cli(db, ['runs', 'rollbacks', '--job', JOB, '--json'])).stdout) as {
      from: string;
      to: string;
      by: string;
      reason: string | null;
    }[];
    assert.deepEqual(
      history.map((h) => [h.from, h.to, h.reason]),
      [
        [runC, runA, null],
        [runB, runA, 'bad upstream join'],
      ],
    );
  });

  test('retention and a rollback to the same run: a claimed run cannot serve again, a serving one is not dropped', async () => {
    const runs = JSON.parse((await cli(db, ['runs', 'list', '--job', JOB, '--json'])).stdout) as {
      id: string;
      serving?: boolean;
    }[];
    const now = await serving();
    const other = runs.find((r) => r.id !== now && r.id !== undefined && !r.serving)!.id;
    // Retention chose the serving run before a rollback made it serve: its claim keeps it.
    assert.deepEqual(await withTransaction(db.pool, (client) => claimDrop(client, now)), { layers: [], serving: true });
    // Retention claimed a run (its tables about to go): a rollback to it is refused.
    assert.deepEqual(await withTransaction(db.pool, (client) => claimDrop(client, other)), { layers: [], serving: false });
    const refused = await cli(db, ['runs', 'rollback', JOB, '--to', other]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.lastError, new RegExp(`run ${other}'s predictions were dropped by retention`));
    assert.equal(await serving(), now);
  });
});
