import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { linearModel, multiclassModel } from './fixtures/models.js';
import { packageRoot } from '../src/paths.js';
import {
  assertNoConnections,
  request,
  runJob,
  startApi,
  storedRows,
  type Item,
  type RunningApi,
  type StoredRow,
  seedTwoDates,
  FIXTURE_D1,
  FIXTURE_D2,
  BIG_KEY,
} from './api-helpers.js';
import {
  assertClose,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  sourceRows,
  writeJob,
  type TestDb,
  registerModel,
} from './helpers.js';

const D1 = FIXTURE_D1;
const D2 = FIXTURE_D2;
const BIG = BIG_KEY;

/** GET /v1/predictions/:job/:key against runs published by `prescore run`. */
describe('GET /v1/predictions/:job/:key', () => {
  let db: TestDb;
  let server: RunningApi;
  let run1: string;
  let run2: string;
  let textRun: string;
  before(async () => {
    db = await createTestDb('api_get');
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'multi', 'multiclass');
    // Key 1 is the largest bigint; D2 has fewer keys than D1, and its key 5 is rejected.
    ({ d1: run1, d2: run2 } = await seedTwoDates(db, 'lin-job'));
    await seedFeatures(db.pool, 'tfeats', {
      rows: 50,
      features: 4,
      date: D1,
      type: 'smallint',
      keyType: 'text',
      keyExpr: `'kunde/' || g || '-ü€ x?'`,
    });
    writeJob(db, jobSpec('text-job', 'multi@champion', 'tfeats', featureNames(4), { output: multiclassModel().output }));
    textRun = await runJob(db, 'text-job', D1);
    server = await startApi(db);
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  const get = (job: string, key: string, query = '') =>
    request<Item & { error?: string }>(server.base, `/v1/predictions/${job}/${encodeURIComponent(key)}${query}`);

  test('answers from the newest published date, with the run, the model and the stored values', async () => {
    const stored = await storedRows(db, run2);
    const source = await sourceRows(db.pool, 'feats', 4, D2);
    for (const key of ['2', '77', '200']) {
      const r = await get('lin-job', key);
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type')!, /^application\/json/);
      assert.deepEqual(r.body, {
        job: 'lin-job',
        key,
        asOf: D2,
        runId: run2,
        model: { name: 'lin', version: 1 },
        score: stored.get(key)!.score,
        label: null,
        outputs: null,
      });
      // And the stored value is the model's output for the row (not some other key's).
      assertClose(r.body.score!, linearModel().expect(source.get(key)!).score!, 1e-5, `key ${key}`);
    }
  });

  test('a bigint key beyond 2^53 round-trips exactly, as a string', async () => {
    const r = await get('lin-job', BIG);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.text.includes(`"key":"${BIG}"`), r.text);
    assert.equal(r.body.key, BIG);
    assert.equal(typeof r.body.runId, 'string');
    assert.equal(r.body.score, (await storedRows(db, run2)).get(BIG)!.score);
  });

  test('asOf answers from that date; without it a key absent from the newest date is missing', async () => {
    const stored1 = await storedRows(db, run1);
    const old = await get('lin-job', '250', `?asOf=${D1}`);
    assert.equal(old.status, 200, old.text);
    assert.equal(old.body.asOf, D1);
    assert.equal(old.body.runId, run1);
    assert.equal(old.body.score, stored1.get('250')!.score);
    // Key 250 exists only on D1: no fallback to an older date.
    const newest = await get('lin-job', '250');
    assert.equal(newest.status, 404);
    assert.match(newest.body.error!, /no prediction for key "250" in job "lin-job" on 2026-11-21/);
    // Key 5 was rejected on D2: missing there, served on D1.
    assert.equal((await get('lin-job', '5')).status, 404);
    assert.equal((await get('lin-job', '5', `?asOf=${D1}`)).status, 200);
    // The same key on both dates: two runs, two values.
    const a = await get('lin-job', '77', `?asOf=${D1}`);
    const b = await get('lin-job', '77', `?asOf=${D2}`);
    assert.deepEqual([a.body.runId, b.body.runId], [run1, run2]);
    assert.notEqual(a.body.score, b.body.score);
  });

  test('fallback=latest-before answers from the newest published date on or before asOf, naming it', async () => {
    const later = '2026-11-25';
    const between = await get('lin-job', '77', `?asOf=${later}&fallback=latest-before`);
    assert.equal(between.status, 200, between.text);
    assert.equal(between.body.asOf, D2);
    assert.equal(between.body.runId, run2);
    const exact = await get('lin-job', '77', `?asOf=${D1}&fallback=latest-before`);
    assert.equal(exact.body.runId, run1);
    const before = await get('lin-job', '77', `?asOf=2026-11-01&fallback=latest-before`);
    assert.equal(before.status, 404);
    assert.match(before.body.error!, /no published run on or before 2026-11-01/);
    assert.equal((await get('lin-job', '77', `?asOf=${later}`)).status, 404, 'no fallback unless asked');
    assert.equal((await get('lin-job', '77', `?asOf=${later}&fallback=nearest`)).status, 400);
    assert.equal((await get('lin-job', '77', `?fallback=latest-before`)).status, 400);
    const post = await request<{ predictions: Item[]; missing: string[] }>(server.base, '/v1/predictions/lin-job', {
      body: { keys: ['77', '250'], asOf: later, fallback: 'latest-before' },
    });
    assert.equal(post.status, 200, post.text);
    assert.deepEqual(
      post.body.predictions.map((p) => [p.key, p.asOf, p.runId]),
      [['77', D2, run2]],
    );
    assert.deepEqual(post.body.missing, ['250']);
  });

  test('404 with a JSON error for an unknown job, key or date', async () => {
    const cases: [string, string, string, RegExp][] = [
      ['no-such-job', '1', '', /job "no-such-job" has no published predictions/],
      ['lin-job', 'nope', '', /no prediction for key "nope"/],
      ['lin-job', '2', '?asOf=2020-01-01', /job "lin-job" has no published run for 2020-01-01/],
    ];
    for (const [job, key, query, message] of cases) {
      const r = await get(job, key, query);
      assert.equal(r.status, 404, `${job}/${key}${query}`);
      assert.deepEqual(Object.keys(r.body), ['error']);
      assert.match(r.body.error!, message);
    }
  });

  test('text keys with "/", "?", spaces and non-ASCII; label and outputs of a classifier', async () => {
    const stored = await storedRows(db, textRun);
    assert.equal(stored.size, 50);
    for (const key of ['kunde/1-ü€ x?', 'kunde/50-ü€ x?']) {
      const r = await get('text-job', key);
      assert.equal(r.status, 200, r.text);
      const want = stored.get(key) as StoredRow;
      assert.equal(r.body.key, key);
      assert.equal(r.body.model.name, 'multi');
      assert.equal(r.body.score, want.score);
      assert.ok(['bronze', 'silver', 'gold'].includes(r.body.label!));
      assert.equal(r.body.label, want.label);
      assert.deepEqual(r.body.outputs, want.outputs);
      assert.equal(r.body.outputs!.length, 3);
    }
  });

  test('`prescore serve` answers over HTTP and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [path.join(packageRoot, 'bin', 'prescore.js'), 'serve', '--port', '0'], {
      env: { ...process.env, DATABASE_URL: db.url, PRESCORE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const base = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    const r = await request<Item>(base, `/v1/predictions/lin-job/${BIG}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.runId, run2);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    await assertNoConnections(db, ['prescore', 'prescore-listen']);
  });
});
