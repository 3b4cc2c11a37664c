import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bucketSql } from '../src/db/sql/variants.js';
import { bucketOf, jobVariants, resolveSplit } from '../src/serving/split.js';
import { assertClose } from './helpers.js';
import { linearModel } from './fixtures/models.js';
import { request, runJob } from './api-helpers.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  sourceRows,
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';

const JOB = 'ab-split';
const OLD = '2026-12-01'; // scored before log@1 became a challenger
const DATE = '2026-12-02';
const ROWS = 3000;
const SPLIT = { champion: 70, challenger: 20, '1': 10 };
const CHALLENGERS = ['lin@challenger', 'log@1'];

interface Item {
  key: string;
  runId: string;
  model: { name: string; version: number };
  variant?: string;
  assigned?: string;
  fallback?: string;
  source?: string;
  score: number | null;
}

interface Batch {
  predictions: Item[];
  missing: string[];
}

/** `prescore serve --port 0` as a child process, once it listens. */
async function serve(db: TestDb): Promise<{ base: string; stop(): Promise<void>; stderr(): string }> {
  const child = startCli(db, ['serve', '--port', '0'], { PRESCORE_LOG_LEVEL: 'info' });
  const base = await waitFor(
    'prescore serve to listen',
    () => {
      if (child.exitCode() !== null) throw new Error(`serve exited: ${child.output().stderr}`);
      return /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.output().stdout)?.[1];
    },
    20_000,
  );
  return {
    base,
    stderr: () => child.output().stderr,
    stop: async () => {
      child.kill('SIGTERM');
      await child.done;
    },
  };
}

/** POSTs every key in batches of 1000; the raw bodies and the parsed items by key. */
async function postAll(base: string, keys: string[], query = ''): Promise<{ bodies: string[]; items: Map<string, Item> }> {
  const bodies: string[] = [];
  const items = new Map<string, Item>();
  for (let i = 0; i < keys.length; i += 1000) {
    const r = await request<Batch>(base, `/v1/predictions/${JOB}${query}`, { body: { keys: keys.slice(i, i + 1000) } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.missing, []);
    bodies.push(r.text);
    for (const p of r.body.predictions) items.set(p.key, p);
  }
  return { bodies, items };
}

/** Stored scores of a run by slot (0: champion). */
async function storedBySlot(db: TestDb, runId: string): Promise<Map<number, Map<string, number>>> {
  const { rows } = await db.pool.query<{ slot: number; key: string; score: number }>(
    `SELECT 0 AS slot, key, score FROM prescore.predictions WHERE run_id = $1
     UNION ALL SELECT slot, key, score FROM prescore.challenger_predictions WHERE run_id = $1`,
    [runId],
  );
  const out = new Map<number, Map<string, number>>([0, 1, 2].map((s) => [s, new Map()]));
  for (const r of rows) out.get(r.slot)!.set(r.key, r.score);
  return out;
}

/**
 * A/B serving with real PostgreSQL and real `prescore serve` processes: buckets match the
 * documented formula (also in SQL) in every replica and after a restart, shares follow the
 * split, a challenger's rejects fall back to the champion, a split change is served within a
 * second, bad splits are refused with the field and the fix.
 */
describe('A/B serving (serving.split)', () => {
  let db: TestDb;
  let runId: string;
  let oldRunId: string;
  const keys = Array.from({ length: ROWS }, (_, i) => String(i + 1));

  before(async () => {
    db = await createTestDb('ab_split');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: OLD });
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE, salt: 1 });
    await registerModel(db, 'lin', 'linear-float32'); // v1, champion
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-ab-'));
    fs.writeFileSync(path.join(dir, 'lin2.onnx'), linearModel(4, 9).bytes);
    const r = await cli(db, ['models', 'register', 'lin', path.join(dir, 'lin2.onnx'), '--alias', 'challenger']); // v2
    assert.equal(r.code, 0, r.stderr);
    fs.rmSync(dir, { recursive: true, force: true });
    await registerModel(db, 'log', 'log'); // NaN / -Infinity for f0 <= 0: the challenger rejects those rows
    writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { challengers: ['lin@challenger'] }));
    oldRunId = await runJob(db, JOB, OLD);
    writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { challengers: CHALLENGERS }));
    runId = await runJob(db, JOB, DATE);
    writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { challengers: CHALLENGERS, serving: { split: SPLIT } }));
  });
  after(async () => db?.drop());

  test('the bucket is the documented formula, in SQL too (bigint and unicode keys)', async () => {
    // A fixed vector: the formula is a contract, analysts recompute it.
    const h = crypto.createHash('sha256').update('churn-nightly\n42', 'utf8').digest();
    assert.equal(bucketOf('churn-nightly', '42'), h.readUInt32BE(0) % 100);
    assert.equal(bucketOf('churn-nightly', '42'), 40);
    const rnd = (n: number) => crypto.randomInt(n);
    const samples: string[] = [
      '0',
      '-1',
      '9223372036854775807',
      '-9223372036854775808',
      'é',
      'e\u0301',
      '日本語',
      '🎉 key',
      'a\nb',
    ];
    for (let i = 0; i < 2000; i++) samples.push((BigInt(rnd(2 ** 47)) * BigInt(rnd(2 ** 16) + 1)).toString());
    const alphabet = ['a', 'Z', '7', 'ß', 'ø', 'Ω', 'ж', '中', '한', '🎉', '\u0301', ' ', '-', '/', '%'];
    for (let i = 0; i < 2000; i++) {
      samples.push(Array.from({ length: 1 + rnd(12) }, () => alphabet[rnd(alphabet.length)]).join(''));
    }
    for (const job of [JOB, 'churn-nightly']) {
      const { rows } = await db.pool.query<{ k: string; b: string }>(
        `SELECT k, ${bucketSql('$1::text', 'k')} AS b FROM unnest($2::text[]) AS k`,
        [job, samples],
      );
      assert.equal(rows.length, samples.length);
      for (const r of rows) assert.equal(Number(r.b), bucketOf(job, r.k), `${job} key ${JSON.stringify(r.k)}`);
    }
  });

  test('over 100,000 keys each variant gets its share within 1 percentage point', () => {
    const split = resolveSplit({ model: 'lin@champion', challengers: CHALLENGERS, serving: { split: SPLIT } })!;
    assert.deepEqual(
      split.ranges.map((r) => [r.variant.name, r.from, r.to]),
      [
        ['champion', 0, 69],
        ['challenger', 70, 89],
        ['1', 90, 99],
      ],
    );
    // Names: the part after @, unless it is "champion" or two challengers share it.
    assert.deepEqual(
      jobVariants({ model: 'a@champion', challengers: ['b@champion', 'c@1', 'd@1', 'e@x'] }).map((v) => v.name),
      ['champion', 'b@champion', 'c@1', 'd@1', 'x'],
    );
    const counts = new Map<string, number>();
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const v = split.byBucket[bucketOf(JOB, String(i))]!.name;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    for (const [name, share] of Object.entries(SPLIT)) {
      const got = (100 * (counts.get(name) ?? 0)) / n;
      assert.ok(Math.abs(got - share) <= 1, `${name}: ${got}% of keys, split says ${share}%`);
    }
  });

  test('jobs validate refuses bad splits with the field and the fix', async () => {
    const cases: [string, unknown, RegExp][] = [
      [
        'ab-sum',
        { champion: 80, challenger: 10 },
        /serving\.split: the shares add up to 90, not 100: make them add up to exactly 100/,
      ],
      [
        'ab-neg',
        { champion: 120, challenger: -20 },
        /serving\.split\.challenger: must be a whole percentage from 0 to 100 \(got -20\)/,
      ],
      [
        'ab-frac',
        { champion: 79.5, challenger: 20.5 },
        /serving\.split\.champion: must be a whole percentage from 0 to 100 \(got 79\.5\)/,
      ],
      [
        'ab-text',
        { champion: '80', challenger: 20 },
        /serving\.split\.champion: must be a whole percentage from 0 to 100 \(got "80"\)/,
      ],
      [
        'ab-unknown',
        { champion: 80, shadow: 20 },
        /serving\.split\.shadow: names no model of the job; the variants are champion \(model "lin@champion"\), challenger \(challengers\[0\] "lin@challenger"\), 1 \(challengers\[1\] "log@1"\): add the model to challengers \(e\.g\. "lin@shadow"\), or remove it from the split/,
      ],
      [
        'ab-twice',
        { champion: 80, challenger: 10, 'lin@challenger': 10 },
        /serving\.split\.lin@challenger: is challenger again \(also listed as "challenger"\): list each variant once/,
      ],
      ['ab-empty', {}, /serving\.split: lists no variant/],
    ];
    for (const [name, split] of cases) {
      writeJob(db, jobSpec(name, 'lin@champion', 'feats', featureNames(4), { challengers: CHALLENGERS, serving: { split } }));
    }
    // One validate of every job file: all problems at once.
    const r = await cli(db, ['jobs', 'validate']);
    assert.equal(r.code, 2, r.stderr);
    for (const [name, , expected] of cases) {
      assert.match(r.stderr, new RegExp(`${name}\\.json`), name);
      assert.match(r.stderr, expected, name);
    }
    assert.match(r.stdout, new RegExp(`ok  ${JOB}:`), 'the good split validates');
    for (const [name] of cases) fs.rmSync(path.join(db.jobsDir, `${name}.json`));
  });

  test('two replicas and a restart answer every key from its bucket’s variant, falling back on rejects', async () => {
    const [a, b] = await Promise.all([serve(db), serve(db)]);
    let restarted: Awaited<ReturnType<typeof serve>> | undefined;
    try {
      const stored = await storedBySlot(db, runId);
      const split = resolveSplit({ model: 'lin@champion', challengers: CHALLENGERS, serving: { split: SPLIT } })!;
      const fromA = await postAll(a.base, keys);
      const fromB = await postAll(b.base, keys);
      assert.deepEqual(fromB.bodies, fromA.bodies, 'replicas answer byte for byte the same');
      const models: Record<string, [string, number, number]> = {
        champion: ['lin', 1, 0],
        challenger: ['lin', 2, 1],
        '1': ['log', 1, 2],
      };
      let fallbacks = 0;
      for (const key of keys) {
        const item = fromA.items.get(key)!;
        const assigned = split.byBucket[bucketOf(JOB, key)]!.name;
        assert.equal(item.runId, runId);
        const [name, version, slot] = models[assigned]!;
        if (stored.get(slot)!.has(key)) {
          assert.equal(item.variant, assigned, `key ${key}`);
          assert.deepEqual(item.model, { name, version });
          assert.equal(item.score, stored.get(slot)!.get(key));
          assert.equal(item.fallback, undefined);
        } else {
          // Only the log model rejects rows (its output is NaN or infinite for f0 <= 0).
          assert.equal(assigned, '1', `key ${key}`);
          assert.equal(item.variant, 'champion');
          assert.equal(item.assigned, '1');
          assert.deepEqual(item.model, { name: 'lin', version: 1 });
          assert.equal(item.score, stored.get(0)!.get(key));
          assert.match(item.fallback!, /^challenger "1" \(log v1\) rejected this key: /);
          fallbacks++;
        }
      }
      assert.ok(fallbacks > 50, `${fallbacks} fallbacks`);

      // A restarted replica: the same answers.
      await a.stop();
      restarted = await serve(db);
      const again = await postAll(restarted.base, keys.slice(0, 1000));
      assert.deepEqual(again.bodies, fromA.bodies.slice(0, 1), 'after a restart');

      // GET: the same item; ?variant= overrides the bucket; an unknown variant is a 400 naming the valid ones.
      const key = keys.find((k) => split.byBucket[bucketOf(JOB, k)]!.name === 'challenger')!;
      const one = await request<Item>(b.base, `/v1/predictions/${JOB}/${key}`);
      assert.equal(one.status, 200);
      assert.equal(JSON.stringify(one.body), JSON.stringify(fromA.items.get(key)));
      const forced = await request<Item>(b.base, `/v1/predictions/${JOB}/${key}?variant=champion`);
      assert.equal(forced.body.variant, 'champion');
      assert.equal(forced.body.score, stored.get(0)!.get(key));
      const byRef = await request<Item>(b.base, `/v1/predictions/${JOB}/${key}?variant=log@1`);
      assert.equal(byRef.body.variant, stored.get(2)!.has(key) ? '1' : 'champion');
      const bad = await request<{ error: string }>(b.base, `/v1/predictions/${JOB}/${key}?variant=shadow`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error, `variant "shadow" is not a variant of job "${JOB}": the variants are champion, challenger, 1`);
      for (const q of ['variant=', 'variant=champion&variant=challenger']) {
        const r = await request<{ error: string }>(b.base, `/v1/predictions/${JOB}/${key}?${q}`);
        assert.equal(r.status, 400, q);
        assert.match(r.body.error, /^variant must be one variant name, e.g. variant=champion/, q);
      }
      const post = await request<{ error: string }>(b.base, `/v1/predictions/${JOB}?variant=shadow`, { body: { keys: [key] } });
      assert.equal(post.status, 400);
      const forcedAll = await postAll(b.base, keys.slice(0, 1000), '?variant=challenger');
      for (const item of forcedAll.items.values()) assert.equal(item.variant, 'challenger');

      // An older run without the challenger: the champion, saying why.
      const oldKey = keys.find((k) => split.byBucket[bucketOf(JOB, k)]!.name === '1')!;
      const old = await request<Item>(b.base, `/v1/predictions/${JOB}/${oldKey}?asOf=${OLD}`);
      assert.equal(old.body.runId, oldRunId);
      assert.equal(old.body.variant, 'champion');
      assert.equal(old.body.assigned, '1');
      assert.equal(
        old.body.fallback,
        `run ${oldRunId} did not score "log@1" (the job's challengers changed after it ran): the champion answers`,
      );

      const metrics = (await request(b.base, '/metrics')).text;
      assert.match(
        metrics,
        new RegExp(`prescore_variant_answers_total\\{prescore_job="${JOB}",variant="challenger",assigned="challenger"\\} \\d+`),
      );
      assert.match(
        metrics,
        new RegExp(`prescore_variant_answers_total\\{prescore_job="${JOB}",variant="champion",assigned="1"\\} \\d+`),
      );

      // A broken job file keeps the last good split (and is logged).
      const file = path.join(db.jobsDir, `${JOB}.json`);
      fs.writeFileSync(file, '{"name": "ab-split", ');
      await waitFor(
        'the refusal to be logged',
        () => /job file refused: the job keeps its last good split/.test(b.stderr()),
        5000,
      );
      assert.equal((await request<Item>(b.base, `/v1/predictions/${JOB}/${key}`)).body.variant, 'challenger');
      writeJob(
        db,
        jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), {
          challengers: CHALLENGERS,
          serving: { split: { champion: 90, challenger: 5 } },
        }),
      );
      await waitFor('the bad split to be logged', () => /the shares add up to 95, not 100/.test(b.stderr()), 5000);
      assert.equal((await request<Item>(b.base, `/v1/predictions/${JOB}/${key}`)).body.variant, 'challenger');

      // A split change is served within a second, by every replica.
      writeJob(
        db,
        jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), {
          challengers: CHALLENGERS,
          serving: { split: { champion: 100 } },
        }),
      );
      const changed = Date.now();
      for (const server of [b, restarted]) {
        await waitFor(
          'the new split',
          async () => (await request<Item>(server.base, `/v1/predictions/${JOB}/${key}`)).body.variant === 'champion',
          5000,
          20,
        );
      }
      const took = Date.now() - changed;
      assert.ok(took < 1000, `the split change took ${took} ms to be served`);

      // No split: today's answer, without variant fields.
      writeJob(db, jobSpec(JOB, 'lin@champion', 'feats', featureNames(4), { challengers: CHALLENGERS }));
      await waitFor(
        'no split',
        async () => (await request<Item>(b.base, `/v1/predictions/${JOB}/${key}`)).body.variant === undefined,
        5000,
        20,
      );
      const plain = await request<Item>(b.base, `/v1/predictions/${JOB}/${key}`);
      assert.deepEqual(Object.keys(plain.body), ['job', 'key', 'asOf', 'runId', 'model', 'score', 'label', 'outputs']);
    } finally {
      await Promise.all([a.stop(), b.stop(), restarted?.stop()]);
    }
  });

  test('with compute on miss: a key the run lacks is computed by the champion, a challenger-assigned one says so', async () => {
    const job = 'ab-miss';
    await seedFeatures(db.pool, 'feats_miss', { rows: 200, features: 4, date: DATE });
    const spec = (extra: Record<string, unknown>) =>
      jobSpec(job, 'lin@champion', 'feats_miss', featureNames(4), { challengers: ['lin@challenger'], ...extra });
    writeJob(db, spec({ serving: { onMiss: 'compute' } }));
    const run = await runJob(db, job, DATE);
    writeJob(db, spec({ serving: { onMiss: 'compute', split: { champion: 50, challenger: 50 } } }));
    // Keys added after the run: missing from it, in the source for its date.
    await db.pool.query(
      `INSERT INTO feats_miss SELECT g, $1::date, sin(g), cos(g), 0.5, -0.25 FROM generate_series(1001, 1040) g`,
      [DATE],
    );
    const source = await sourceRows(db.pool, 'feats_miss', 4, DATE);
    const fresh = Array.from({ length: 40 }, (_, i) => String(1001 + i));
    const assigned = (k: string) => (bucketOf(job, k) < 50 ? 'champion' : 'challenger');
    assert.ok(fresh.some((k) => assigned(k) === 'challenger') && fresh.some((k) => assigned(k) === 'champion'));
    const server = await serve(db);
    try {
      const r = await request<Batch>(server.base, `/v1/predictions/${job}`, { body: { keys: [...fresh, '7'] } });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.missing, []);
      const items = new Map(r.body.predictions.map((p) => [p.key, p]));
      for (const key of fresh) {
        const item = items.get(key)!;
        assert.equal(item.runId, run);
        assert.equal(item.source, 'computed', `key ${key}`);
        assert.equal(item.variant, 'champion', `key ${key}`);
        assert.deepEqual(item.model, { name: 'lin', version: 1 });
        assertClose(item.score!, linearModel().expect(source.get(key)!).score!, 1e-5, `computed key ${key}`);
        if (assigned(key) === 'champion') assert.equal(item.fallback, undefined, `key ${key}`);
        else {
          assert.equal(item.assigned, 'challenger', `key ${key}`);
          assert.equal(item.fallback, 'challenger "challenger" (lin v2) has no prediction for this key', `key ${key}`);
        }
      }
      // A stored key is answered as before, from its variant; a GET of a computed key says the same as the POST.
      assert.equal(items.get('7')!.source, undefined);
      const one = fresh.find((k) => assigned(k) === 'challenger')!;
      const get = await request<Item>(server.base, `/v1/predictions/${job}/${one}`);
      assert.equal(JSON.stringify(get.body), JSON.stringify(items.get(one)));
    } finally {
      await server.stop();
    }
  });
});
