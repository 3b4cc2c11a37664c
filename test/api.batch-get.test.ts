import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request, runJob, startApi, storedRows, type Item, type RunningApi, type StoredRow } from './api-helpers.js';
import { Lookup } from '../src/api/lookup.js';
import { createTestDb, featureNames, jobSpec, seedFeatures, writeJob, type TestDb, registerModel } from './helpers.js';

const D1 = '2026-11-20';
const D2 = '2026-11-21';
const ROWS = 1500;

interface Batch {
  predictions: Item[];
  missing: string[];
  error?: string;
}

/** POST /v1/predictions/:job, and many GETs at once sharing lookups. */
describe('batch lookups', () => {
  let db: TestDb;
  let server: RunningApi;
  const runs: Record<string, string> = {};
  /** The run of a date as the lookup takes it (these runs hold all their rows). */
  const run = (date: string) => ({ runId: runs[date]!, baseRunId: null });
  const stored: Record<string, Map<string, StoredRow>> = {};
  before(async () => {
    db = await createTestDb('api_batch');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D1 });
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D2, salt: 2 });
    writeJob(db, jobSpec('batch-job', 'lin@champion', 'feats', featureNames(4)));
    for (const d of [D1, D2]) {
      runs[d] = await runJob(db, 'batch-job', d);
      stored[d] = await storedRows(db, runs[d]!);
    }
    // Two lookups in flight at most, as on a busy server: concurrent requests queue and share queries.
    server = await startApi(db, { maxInFlight: 2 });
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  const post = (body: unknown, job = 'batch-job') => request<Batch>(server.base, `/v1/predictions/${job}`, { body });

  function expectItem(item: Item, date: string, key: string): void {
    assert.deepEqual(item, {
      job: 'batch-job',
      key,
      asOf: date,
      runId: runs[date],
      model: { name: 'lin', version: 1 },
      score: stored[date]!.get(key)!.score,
      label: null,
      outputs: null,
    });
  }

  test('found keys in request order (duplicates too), missing ones listed; items equal the GET body', async () => {
    const keys = ['3', 'x', '1', '3', '99999', String(ROWS)];
    const r = await post({ keys });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.body.predictions.map((p) => p.key),
      ['3', '1', '3', String(ROWS)],
    );
    assert.deepEqual(r.body.missing, ['x', '99999']);
    for (const p of r.body.predictions) {
      expectItem(p, D2, p.key);
      const one = await request<Item>(server.base, `/v1/predictions/batch-job/${p.key}`);
      assert.deepEqual(p, one.body);
    }
  });

  test('asOf in the body; 1000 keys in one request, all from one run', async () => {
    const keys = Array.from({ length: 1000 }, (_, i) => String(ROWS - i));
    const r = await post({ keys, asOf: D1 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.predictions.length, 1000);
    assert.deepEqual(r.body.missing, []);
    r.body.predictions.forEach((p, i) => expectItem(p, D1, keys[i]!));
    const none = await post({ keys: ['a', 'b'] });
    assert.deepEqual(none.body, { predictions: [], missing: ['a', 'b'] });
    const unknown = await post({ keys: ['1'] }, 'other-job');
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error!, /job "other-job" has no published predictions/);
  });

  test('hundreds of concurrent GETs and POSTs over two runs: each answered from its own run', async () => {
    const asks = Array.from({ length: 400 }, (_, i) => ({
      date: i % 2 ? D1 : D2,
      key: String(1 + ((i * 7919) % (ROWS + 50))), // some beyond ROWS: missing
    }));
    const [gets, posts] = await Promise.all([
      Promise.all(asks.map((a) => request<Item>(server.base, `/v1/predictions/batch-job/${a.key}?asOf=${a.date}`))),
      Promise.all(
        [D1, D2, D1, D2].map((date, i) =>
          post({ asOf: date, keys: Array.from({ length: 50 }, (_, j) => String(1 + i * 50 + j)) }).then((r) => ({ date, r })),
        ),
      ),
    ]);
    gets.forEach((r, i) => {
      const { date, key } = asks[i]!;
      if (Number(key) > ROWS) assert.equal(r.status, 404, `${date} ${key}`);
      else {
        assert.equal(r.status, 200, r.text);
        expectItem(r.body, date, key);
      }
    });
    for (const { date, r } of posts) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.predictions.length, 50);
      for (const p of r.body.predictions) expectItem(p, date, p.key);
    }
  });

  test('lookups asked in the same turn of the event loop go to PostgreSQL as one query per run', async () => {
    const sent: number[] = [];
    const lookup = new Lookup(server.pool, {
      maxInFlight: 4,
      maxBatchKeys: 120,
      timeoutMs: 5000,
      maxQueuedKeys: 10_000,
      onQuery: (n) => sent.push(n),
    });
    const asks = Array.from({ length: 200 }, (_, i) => ({ date: i % 2 ? D1 : D2, key: String(1 + i) }));
    const found = await Promise.all(asks.map((a) => lookup.find(run(a.date), [a.key])));
    // 100 keys per run, at most 120 per query: one query for each run.
    assert.deepEqual(sent, [100, 100]);
    found.forEach((rows, i) => {
      const { date, key } = asks[i]!;
      assert.deepEqual(rows.get(key), stripKey(stored[date]!.get(key)!));
    });
    // More keys than one query may carry: split, never dropped.
    sent.length = 0;
    const many = Array.from({ length: 300 }, (_, i) => String(1 + i));
    const parts = await Promise.all(many.map((k) => lookup.find(run(D1), [k])));
    assert.deepEqual(sent, [120, 120, 60]);
    parts.forEach((rows, i) => assert.equal(rows.get(many[i]!)!.score, stored[D1]!.get(many[i]!)!.score));
    await lookup.close();
  });

  test('a point read goes ahead of every batch already queued, and a big batch is split', async () => {
    const sent: number[] = [];
    const lookup = new Lookup(server.pool, {
      maxInFlight: 2,
      maxBatchKeys: 100,
      timeoutMs: 5000,
      maxQueuedKeys: 100_000,
      onQuery: (n) => sent.push(n),
    });
    const keysOf = (from: number, n: number) => Array.from({ length: n }, (_, i) => String(from + i));
    // Ten batches of 300 keys: 30 queries of 100, at most one connection for them.
    const batches = Array.from({ length: 10 }, (_, b) => lookup.find(run(D1), keysOf(1 + b * 30, 300)));
    await new Promise((r) => setImmediate(r));
    const point = lookup.find(run(D1), ['7']);
    const [pointRows, ...batchRows] = await Promise.all([point, ...batches]);
    assert.equal(pointRows.get('7')!.score, stored[D1]!.get('7')!.score);
    batchRows.forEach((rows, b) => assert.equal(rows.size, 300, `batch ${b}`));
    // The point read's query (1 key) went out right after the first batch query, not after 30.
    assert.equal(sent.length, 31);
    assert.ok(sent.indexOf(1) <= 2, `the point read was query ${sent.indexOf(1) + 1} of ${sent.length}`);
    assert.ok(sent.every((n) => n <= 100));
    await lookup.close();
    await assert.rejects(lookup.find(run(D1), ['7']), /shutting down/);
  });

  test('lookups beyond the queue bound are refused at once', async () => {
    const lookup = new Lookup(server.pool, { maxInFlight: 1, maxBatchKeys: 50, timeoutMs: 5000, maxQueuedKeys: 120 });
    const ok = lookup.find(
      run(D1),
      Array.from({ length: 100 }, (_, i) => String(1 + i)),
    );
    await assert.rejects(
      lookup.find(
        run(D1),
        Array.from({ length: 30 }, (_, i) => String(1 + i)),
      ),
      /100 keys are waiting/,
    );
    assert.equal((await ok).size, 100);
    await lookup.close();
  });
});

function stripKey(r: StoredRow): Omit<StoredRow, 'key'> {
  return { score: r.score, label: r.label, outputs: r.outputs };
}
