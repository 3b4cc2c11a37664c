import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import autocannon, { type Instance, type Request, type Result } from 'autocannon';
import pg from 'pg';
import { pino } from 'pino';
import { multiclassModel } from './fixtures/models.js';
import { packageRoot } from '../src/paths.js';
import { notifyPublished, swapPointer } from '../src/db/sql/serving.js';
import { withTransaction } from '../src/db/pool.js';
import { buildApi } from '../src/api/server.js';
import { loadRun } from '../src/api/memory.js';
import { silentLogger } from '../src/log.js';
import { startListening, stopChild } from '../bench/support.js';
import {
  BIG_KEY,
  FIXTURE_D1,
  FIXTURE_D2,
  request,
  runJob,
  seedTwoDates,
  startApi,
  storedRows,
  type Item,
  type RunningApi,
  type StoredRow,
} from './api-helpers.js';
import { createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

const D1 = FIXTURE_D1;
const D2 = FIXTURE_D2;
const D3 = '2026-11-22';
const BIG = BIG_KEY;

/** A run that holds all its rows, as the cache and loadRun take it (these tests' runs are no layers). */
const full = (runId: string) => ({ runId, baseRunId: null });

/** Waits until `runIds` are all held in memory by the API. */
async function loaded(server: RunningApi, runIds: string[]): Promise<void> {
  for (const id of runIds) server.api.cache.want(full(id));
  const started = Date.now();
  while (!runIds.every((id) => server.api.cache.has(id))) {
    assert.ok(Date.now() - started < 10_000, `runs ${runIds} not loaded into memory within 10 s`);
    await sleep(20);
  }
}

async function metric(base: string, name: string): Promise<number> {
  const text = (await request(base, '/metrics')).text;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** The read API with runs held in memory answers exactly as it does from PostgreSQL. */
describe('runs held in memory', () => {
  let db: TestDb;
  let fromDb: RunningApi;
  let fromMemory: RunningApi;
  const runs: Record<string, string> = {};
  before(async () => {
    db = await createTestDb('api_memory');
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'multi', 'multiclass');
    // As api.get: key 1 is the largest bigint, D2 has fewer keys and rejects key 5.
    Object.assign(runs, await seedTwoDates(db, 'mem-lin'));
    await seedFeatures(db.pool, 'tfeats', {
      rows: 50,
      features: 4,
      date: D1,
      type: 'smallint',
      keyType: 'text',
      keyExpr: `'kunde/' || g || '-ü€ x?' || CASE WHEN g = 7 THEN '😀' ELSE '' END`,
    });
    writeJob(db, jobSpec('mem-text', 'multi@champion', 'tfeats', featureNames(4), { output: multiclassModel().output }));
    runs.text = await runJob(db, 'mem-text', D1);
    fromDb = await startApi(db);
    // Small pages: a load takes several, as a big run's does.
    fromMemory = await startApi(db, { cacheBytes: 16 * 1024 * 1024, cachePageRows: 64 });
  });
  after(async () => {
    // Both at once: each checks that no connection of the test's pools is left.
    await Promise.all([fromDb?.close(), fromMemory?.close()]);
    await db.drop();
  });

  test('every answer from memory is byte-identical to the one from PostgreSQL', async () => {
    // The newest run of each job loads by itself; the older date's on demand.
    await loaded(fromMemory, [runs.d2!, runs.text!]);
    await loaded(fromMemory, [runs.d1!]);
    const hitsBefore = await metric(fromMemory.base, 'prescore_api_cache_hits_total');
    const textKeys = ['kunde/1-ü€ x?', 'kunde/7-ü€ x?😀', 'kunde/50-ü€ x?', 'kunde/51-ü€ x?'];
    const gets = [
      ...['2', '77', '200', BIG, '5', '250', 'nope', '0', '-1', ' 2'].map(
        (k) => `/v1/predictions/mem-lin/${encodeURIComponent(k)}`,
      ),
      ...['5', '250', '300', BIG].map((k) => `/v1/predictions/mem-lin/${k}?asOf=${D1}`),
      `/v1/predictions/mem-lin/77?asOf=2026-11-25&fallback=latest-before`,
      `/v1/predictions/mem-lin/77?asOf=2026-11-01&fallback=latest-before`,
      `/v1/predictions/mem-lin/77?asOf=2020-01-01`,
      `/v1/predictions/no-such-job/1`,
      ...textKeys.map((k) => `/v1/predictions/mem-text/${encodeURIComponent(k)}`),
    ];
    const posts: [string, unknown][] = [
      ['mem-lin', { keys: ['3', 'x', '1', '3', '99999', '200', '5', BIG] }],
      ['mem-lin', { keys: ['250', '5', '2'], asOf: D1 }],
      ['mem-lin', { keys: ['77', '250'], asOf: '2026-11-25', fallback: 'latest-before' }],
      ['mem-lin', { keys: Array.from({ length: 1000 }, (_, i) => String(300 - (i % 310))) }],
      ['mem-lin', { keys: Array.from({ length: 40 }, (_, i) => String(i)), asOf: D1 }],
      ['mem-lin', { keys: ['a', 'b'] }],
      ['mem-text', { keys: [...textKeys, 'kunde/1-ü€ x?'] }],
    ];
    const compare = async (path: string, init: { body?: unknown } = {}) => {
      const [a, b] = await Promise.all([request(fromDb.base, path, init), request(fromMemory.base, path, init)]);
      const what = `${init.body ? `POST ${JSON.stringify(init.body).slice(0, 80)}` : `GET ${path}`}`;
      assert.equal(b.status, a.status, what);
      assert.equal(b.headers.get('content-type'), a.headers.get('content-type'), what);
      assert.equal(b.text, a.text, what);
      return a;
    };
    const statuses = new Set<number>();
    for (const p of gets) statuses.add((await compare(p)).status);
    for (const [job, body] of posts) statuses.add((await compare(`/v1/predictions/${job}`, { body })).status);
    assert.deepEqual([...statuses].sort(), [200, 404], 'found and missing cases both covered');
    // The rejected key says why, from memory too.
    const rejected = await request<{ rejected?: string }>(fromMemory.base, '/v1/predictions/mem-lin/5');
    assert.match(rejected.body.rejected ?? '', /f2/);
    const hits = (await metric(fromMemory.base, 'prescore_api_cache_hits_total')) - hitsBefore;
    assert.ok(hits > 1000, `answered from memory: ${hits} keys`);
    assert.equal(await metric(fromMemory.base, 'prescore_api_cache_runs'), 3);
    assert.ok((await metric(fromMemory.base, 'prescore_api_cache_bytes')) > 0);
    assert.equal(await metric(fromDb.base, 'prescore_api_cache_budget_bytes'), 0, 'off by default in buildApi');
  });

  test('a run of an older date is loaded after as many requests as the setting says, each counted once', async () => {
    // A server of its own (the others' connections stay open): the newest run loads by itself.
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    const api = await buildApi(pool, silentLogger, { cacheBytes: 16 * 1024 * 1024, cacheHotRequests: 3 });
    try {
      const base = await api.app.listen({ port: 0, host: '127.0.0.1' });
      const started = Date.now();
      const until = async (what: string, done: () => boolean) => {
        while (!done()) {
          assert.ok(Date.now() - started < 10_000, what);
          await sleep(20);
        }
      };
      await until('the newest run loads by itself', () => api.cache.has(runs.d2!));
      const get = async (key: string) =>
        assert.equal((await request(base, `/v1/predictions/mem-lin/${key}?asOf=${D1}`)).status, 200);
      await get('2');
      await get('3');
      await sleep(300);
      assert.equal(api.cache.has(runs.d1!), false, 'two requests are two, not three');
      await get('4');
      await until('the third request loads the run', () => api.cache.has(runs.d1!));
    } finally {
      await api.close();
      await pool.end();
    }
  });

  test('a load pauses after each page as long as the page took, so answering keeps its share of the CPU', async () => {
    const pauses: number[] = [];
    const pause = async (ms: number) => {
      pauses.push(ms);
    };
    // 300 rows in pages of 64: four full pages, each followed by a pause, and the last.
    const run = await loadRun(fromDb.pool, full(runs.d1!), { pageRows: 64, maxBytes: 1e9, yieldShare: 1, pause });
    assert.ok(typeof run !== 'string', String(run));
    assert.equal(run.rows, 300);
    assert.equal(pauses.length, 4);
    assert.ok(pauses.every((ms) => ms > 0));
    pauses.length = 0;
    await loadRun(fromDb.pool, full(runs.d1!), { pageRows: 64, maxBytes: 1e9, yieldShare: 0, pause });
    assert.deepEqual(pauses, [], 'no pause without a share');
  });

  test('a run larger than the budget is answered from PostgreSQL and logged once; LRU eviction past the budget', async () => {
    const lines: { msg: string; runId?: string }[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string }) });
    const api = await buildApi(fromDb.pool, log, { cacheBytes: 2000 });
    try {
      await api.app.ready();
      for (let i = 0; i < 3; i++) {
        api.cache.want(full(runs.d2!));
        await api.cache.idle();
      }
      assert.equal(api.cache.size, 0);
      const tooLarge = lines.filter((l) => /larger than the API memory budget/.test(l.msg) && l.runId === runs.d2);
      assert.equal(tooLarge.length, 1, JSON.stringify(lines));
      const r = await api.app.inject({ url: '/v1/predictions/mem-lin/77' });
      assert.equal(r.statusCode, 200);
      assert.equal(r.body, (await request(fromDb.base, '/v1/predictions/mem-lin/77')).text);
    } finally {
      await api.close();
    }
    // Room for two of the three runs: the third evicts the least recently used.
    const budget = fromMemory.api.cache.bytes; // the three runs loaded above
    const two = await buildApi(fromDb.pool, silentLogger, { cacheBytes: budget - 1 });
    try {
      const cache = two.cache;
      const load = async (id: string) => {
        cache.want(full(id));
        await cache.idle();
        assert.ok(cache.has(id), `run ${id} loaded`);
      };
      await load(runs.d2!);
      await load(runs.text!);
      await sleep(50); // the startup reload's own loads are done
      await cache.idle();
      const r = await two.app.inject({ url: '/v1/predictions/mem-lin/77' }); // d2 used last
      assert.equal(r.statusCode, 200);
      await load(runs.d1!);
      assert.equal(cache.has(runs.text!), false, 'the least recently used run is evicted');
      assert.equal(cache.has(runs.d2!), true);
      assert.ok(cache.bytes <= budget - 1);
    } finally {
      await two.close();
    }
  });
  test('while the LISTEN connection is down memory does not answer; after it is back, the reloaded pointer does', async () => {
    const server = fromMemory;
    await loaded(server, [runs.d2!]);
    const misses = () => metric(server.base, 'prescore_api_cache_misses_total');
    const before = await misses();
    await request(server.base, '/v1/predictions/mem-lin/77');
    assert.equal(await misses(), before, 'answered from memory while listening');
    await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'prescore-api-test-listen' AND datname = current_database() AND pid <> pg_backend_pid()`,
    );
    // Both APIs are deaf now. A pointer moved without anyone hearing of it: D2 to the run of D1.
    await db.pool.query('UPDATE prescore.serving SET run_id = $1 WHERE job = $2 AND date = $3', [runs.d1, 'mem-lin', D2]);
    const started = Date.now();
    while (server.api.listener.connected && Date.now() - started < 5000) await sleep(5);
    if (!server.api.listener.connected) {
      const r = await request<Item>(server.base, '/v1/predictions/mem-lin/77');
      assert.equal(r.status, 200);
      assert.equal(await misses(), before + 1, 'deaf: answered from PostgreSQL');
    }
    // Reconnected: the full reload finds the moved pointer before memory answers again.
    let runId = '';
    while (Date.now() - started < 8000) {
      runId = (await request<Item>(server.base, `/v1/predictions/mem-lin/77?asOf=${D2}`)).body.runId;
      if (runId === runs.d1) break;
      await sleep(20);
    }
    assert.equal(runId, runs.d1, 'the moved pointer is served after the reconnect');
    await loaded(server, [runs.d1!]);
    const hits = await metric(server.base, 'prescore_api_cache_hits_total');
    await request(server.base, `/v1/predictions/mem-lin/77?asOf=${D2}`);
    assert.equal(await metric(server.base, 'prescore_api_cache_hits_total'), hits + 1, 'memory answers again');
    // Put it back, announced, for the tests after this one.
    await withTransaction(db.pool, async (c) => {
      await swapPointer(c, 'mem-lin', D2, runs.d2!);
      await notifyPublished(c, 'mem-lin', D2, runs.d2!);
    });
  });
});

/**
 * `prescore serve` (memory on by default) under 50 connections while the job is published,
 * rolled back (pointer swap + NOTIFY) and a date is dropped by retention: every answer comes
 * whole from a run that served it at some moment between the request and its answer.
 */
describe('memory under publish, rollback and retention', () => {
  const ROWS = 500;
  let db: TestDb;
  before(async () => {
    db = await createTestDb('api_memory_load');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D1 });
    writeJob(db, jobSpec('mem-load', 'lin@champion', 'feats', featureNames(4), { keepRuns: 2, retainDays: 1 }));
  });
  after(async () => {
    await db.drop();
  });

  test('zero failed and zero mixed responses at 50 connections', async () => {
    const run1 = await runJob(db, 'mem-load', D1);
    const oracle = new Map<string, Map<string, StoredRow>>([[run1, await storedRows(db, run1)]]);
    const { url: base, child } = await startListening([path.join(packageRoot, 'bin', 'prescore.js'), 'serve', '--port', '0'], {
      DATABASE_URL: db.url,
      PRESCORE_LOG_LEVEL: 'warn',
      PRESCORE_JOBS_DIR: db.jobsDir,
    });
    try {
      // Runs read into memory so far (a replaced run leaves memory, a rolled-back-to one comes back).
      const waitLoaded = async (n: number) => {
        const started = Date.now();
        while (!((await metric(base, 'prescore_api_cache_loads_total\\{outcome="loaded"\\}')) >= n)) {
          assert.ok(Date.now() - started < 10_000, 'run not loaded into memory');
          await sleep(20);
        }
      };
      await waitLoaded(1);
      // What serves, and since/until when: [run or null, from (ms), to (ms)] per request kind.
      type Epoch = { runId: string | null; from: number; to: number };
      const newest: Epoch[] = [{ runId: run1, from: 0, to: Infinity }];
      const onD1: Epoch[] = [{ runId: run1, from: 0, to: Infinity }];
      const move = (timeline: Epoch[], runId: string | null, from: number, to: number) => {
        timeline[timeline.length - 1]!.to = to;
        timeline.push({ runId, from, to: Infinity });
      };

      interface Seen {
        conn: number;
        kind: 'newest' | 'd1';
        sent: number;
        got: number;
        status: number;
        runIds: string[];
        items: Item[];
        text: string;
      }
      const seen: Seen[] = [];
      let conns = 0;
      const key = () => String(1 + Math.floor(Math.random() * ROWS));
      type Ctx = { conn?: number; sent?: number; kind?: 'newest' | 'd1' } & Record<string, unknown>;
      const record = (status: number, body: string, ctx: Ctx, single: boolean) => {
        const got = Date.now();
        let items: Item[] = [];
        if (status === 200) {
          const parsed = JSON.parse(body) as Item & { predictions: Item[]; missing: string[] };
          items = single ? [parsed] : parsed.predictions;
          if (!single && parsed.missing.length > 0) status = 299; // counted as failed below
        }
        seen.push({
          conn: ctx.conn!,
          kind: ctx.kind!,
          sent: ctx.sent!,
          got,
          status,
          runIds: [...new Set(items.map((i) => i.runId))],
          items,
          text: body.slice(0, 200),
        });
      };
      const setup = (ctx: Ctx, kind: 'newest' | 'd1') => {
        ctx.conn ??= conns++;
        ctx.sent = Date.now();
        ctx.kind = kind;
      };
      const asOf = (kind: 'newest' | 'd1') => (kind === 'd1' ? D1 : undefined);
      const requests = (['newest', 'd1'] as const).flatMap((kind) => [
        {
          method: 'GET',
          setupRequest: (req: Request, ctx: Ctx) => {
            setup(ctx, kind);
            return { ...req, path: `/v1/predictions/mem-load/${key()}${kind === 'd1' ? `?asOf=${D1}` : ''}` };
          },
          onResponse: (status: number, body: string, ctx: Ctx) => record(status, body, ctx, true),
        },
        {
          method: 'POST',
          setupRequest: (req: Request, ctx: Ctx) => {
            setup(ctx, kind);
            return {
              ...req,
              path: '/v1/predictions/mem-load',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ keys: Array.from({ length: 20 }, key), asOf: asOf(kind) }),
            };
          },
          onResponse: (status: number, body: string, ctx: Ctx) => record(status, body, ctx, false),
        },
      ]);
      let finished!: Promise<Result>;
      let instance: Instance | undefined;
      let run2 = '';
      let run3 = '';
      try {
        instance = await new Promise<Instance>((resolve) => {
          finished = new Promise((done, fail) => {
            resolve(autocannon({ url: base, connections: 50, duration: 30, requests }, (err, r) => (err ? fail(err) : done(r))));
          });
        });

        await sleep(600);
        // 1. A publish of the same date from changed features.
        await db.pool.query('UPDATE feats SET f0 = f0 + 1 WHERE as_of = $1', [D1]);
        let t = Date.now();
        run2 = await runJob(db, 'mem-load', D1);
        const publishedAt = async (runId: string) =>
          (
            await db.pool.query<{ t: Date }>('SELECT published_at AS t FROM prescore.runs WHERE id = $1', [runId])
          ).rows[0]!.t.getTime();
        const p2 = Math.max(t, (await publishedAt(run2)) - 50);
        oracle.set(run2, await storedRows(db, run2));
        move(newest, run2, p2, Date.now());
        move(onD1, run2, p2, Date.now());
        await waitLoaded(2);
        await sleep(500);
        // 2. A rollback: the pointer back to run 1, announced as a publish is.
        t = Date.now();
        await withTransaction(db.pool, async (c) => {
          await swapPointer(c, 'mem-load', D1, run1);
          await notifyPublished(c, 'mem-load', D1, run1);
        });
        move(newest, run1, t, Date.now());
        move(onD1, run1, t, Date.now());
        await waitLoaded(3);
        await sleep(400);
        // 3. A newer date, whose publish drops D1 by retention (retainDays 1) and its runs.
        await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D3, salt: 3 });
        t = Date.now();
        run3 = await runJob(db, 'mem-load', D3);
        const p3 = Math.max(t, (await publishedAt(run3)) - 50);
        oracle.set(run3, await storedRows(db, run3));
        move(newest, run3, p3, Date.now());
        move(onD1, null, p3, Date.now());
        await sleep(800);
      } finally {
        instance?.stop();
      }
      const result = await finished;

      const { rows: left } = await db.pool.query('SELECT 1 FROM prescore.predictions WHERE run_id = ANY ($1::bigint[]) LIMIT 1', [
        [run1, run2],
      ]);
      assert.equal(left.length, 0, 'retention should have dropped the runs of D1');
      assert.equal(result.errors + result.timeouts, 0, 'no connection errors or timeouts');
      assert.ok(seen.length > 500, `only ${seen.length} responses`);

      // Granted for the notification to arrive and the pointers to reload, as from PostgreSQL.
      const LAG_MS = 1000;
      const last = new Map<string, number>();
      let failed = 0;
      for (const s of seen) {
        const timeline = s.kind === 'newest' ? newest : onD1;
        let runId: string | null;
        if (s.status === 200) {
          assert.equal(s.runIds.length, 1, `a response mixed runs ${s.runIds}: ${s.text}`);
          runId = s.runIds[0]!;
          for (const item of s.items) {
            assert.equal(item.score, oracle.get(runId)!.get(item.key)!.score, `run ${runId} key ${item.key}`);
          }
        } else if (s.status === 404 && s.kind === 'd1' && s.text.includes(`no published run for ${D1}`)) {
          runId = null;
        } else {
          failed++;
          continue;
        }
        // The run served at some moment between the request and its answer (and, per
        // connection, never a step back to an epoch already left).
        const id = `${s.conn} ${s.kind}`;
        const from = last.get(id) ?? 0;
        const epoch = timeline.findIndex((e, i) => i >= from && e.runId === runId && e.from <= s.got && s.sent <= e.to + LAG_MS);
        assert.ok(
          epoch >= 0,
          `${s.kind} answered by run ${runId} (sent ${s.sent}, answered ${s.got}); serving: ${JSON.stringify(timeline)}`,
        );
        last.set(id, epoch);
      }
      assert.equal(
        failed,
        0,
        `failed responses: ${seen
          .filter((s) => s.status !== 200 && s.status !== 404)
          .slice(0, 3)
          .map((s) => `${s.status} ${s.text}`)}`,
      );
      for (const runId of [run2, run3])
        assert.ok(
          seen.some((s) => s.runIds[0] === runId),
          `run ${runId} never served`,
        );
      assert.ok(
        seen.some((s) => s.kind === 'd1' && s.status === 404),
        'D1 is gone after retention',
      );
      assert.ok((await metric(base, 'prescore_api_cache_hits_total')) > seen.length, 'most keys came from memory');
      assert.ok(
        (await metric(base, 'prescore_api_cache_loads_total\\{outcome="loaded"\\}')) >= 4,
        'runs 1, 2, 1 again and 3 loaded',
      );
    } finally {
      await stopChild(child);
    }
  });
});
