import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tableFromIPC } from 'apache-arrow';
import { openBundle, type Manifest } from 'prescore';
import { multiclassModel } from './fixtures/models.js';
import { BundleStore } from '../src/bundle/read.js';
import { buildBundleApi } from '../src/bundle/server.js';
import { silentLogger } from '../src/log.js';
import {
  assertCutOff,
  BIG_KEY,
  FIXTURE_D1,
  FIXTURE_D2,
  request,
  runJob,
  seedTwoDates,
  SLOW_REQUESTS,
  startApi,
  storedRows,
  type RunningApi,
} from './api-helpers.js';
import {
  assertClose,
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

const D1 = FIXTURE_D1;
const D2 = FIXTURE_D2;
const BIG = BIG_KEY;
const F = featureNames(4);
/** Nothing listens here: a server that tried PostgreSQL would fail. */
const CLOSED_DB = 'postgresql://postgres@127.0.0.1:1/nothing';

interface Req {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
}

interface Answer {
  status: number;
  type: string | null;
  text: string;
}

async function ask(base: string, r: Req): Promise<Answer> {
  const res = await request(base, r.path, { method: r.method, body: r.body });
  return { status: res.status, type: res.headers.get('content-type'), text: res.text };
}

/** `prescore serve --bundle DIR` as a process; resolves its base URL. */
async function serveBundle(dir: string, env: Record<string, string | undefined>) {
  const proc = startCli(null, ['serve', '--bundle', dir, '--port', '0'], { PRESCORE_LOG_LEVEL: 'warn', ...env });
  const base = await waitFor(
    'the bundle server to listen',
    () => {
      if (proc.exitCode() !== null) throw new Error(`serve --bundle exited: ${proc.output().stderr}`);
      return /listening on (http:\/\/\S+)/.exec(proc.output().stdout)?.[1];
    },
    20_000,
  );
  return {
    base,
    stop: async () => {
      proc.kill('SIGTERM');
      return proc.done;
    },
  };
}

function copyDir(from: string, to: string): string {
  fs.cpSync(from, to, { recursive: true });
  return to;
}

describe('edge bundles: prescore export --out DIR, serve --bundle, openBundle', () => {
  let db: TestDb;
  let tmp: string;
  let linDir: string;
  let textDir: string;
  let linRun: string;
  let textRun: string;
  const requests: Req[] = [];
  const before_: Answer[] = [];
  before(async () => {
    db = await createTestDb('bundle');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bundle-'));
    await registerModel(db, 'lin', 'linear-float32');
    await registerModel(db, 'multi', 'multiclass');
    linRun = (await seedTwoDates(db, 'lin-job', { onBadRow: 'reject' })).d2;
    await seedFeatures(db.pool, 'tfeats', {
      rows: 60,
      features: 4,
      date: D1,
      keyType: 'text',
      keyExpr: `CASE WHEN g = 1 THEN 'Ω' WHEN g = 2 THEN '😀' WHEN g = 3 THEN 'z' ELSE 'kunde/' || g || '-ü€ x?' END`,
    });
    writeJob(db, jobSpec('text-job', 'multi@champion', 'tfeats', F, { output: multiclassModel().output }));
    textRun = await runJob(db, 'text-job', D1);

    const get = (job: string, key: string, q = '') =>
      requests.push({ method: 'GET', path: `/v1/predictions/${job}/${encodeURIComponent(key)}${q}` });
    for (const key of ['2', '77', '200', BIG, '5', '250', '9999']) get('lin-job', key);
    get('lin-job', '2', `?asOf=${D2}`);
    get('lin-job', '2', '?asOf=2026-12-31&fallback=latest-before');
    get('lin-job', '2', '?asOf=2020-01-01');
    get('lin-job', '2', '?asof=2020-01-01');
    get('no-such-job', '2');
    const post = (job: string, body: unknown) => requests.push({ method: 'POST', path: `/v1/predictions/${job}`, body });
    post('lin-job', { keys: ['3', '5', '9999', BIG, '3', '150'] });
    post('lin-job', { keys: ['7'], asOf: D2 });
    post('lin-job', { keys: [] });
    for (const key of ['Ω', '😀', 'z', 'kunde/4-ü€ x?', 'kunde/60-ü€ x?', 'missing']) get('text-job', key);
    post('text-job', { keys: ['😀', 'kunde/10-ü€ x?', 'nope', 'Ω'] });

    const api: RunningApi = await startApi(db);
    try {
      for (const r of requests) before_.push(await ask(api.base, r));
    } finally {
      await api.close();
    }
    linDir = path.join(tmp, 'lin-bundle');
    textDir = path.join(tmp, 'text-bundle');
    const e1 = await cli(db, ['export', 'lin-job', '--out', linDir]);
    assert.equal(e1.code, 0, e1.stderr);
    assert.match(
      e1.stdout,
      new RegExp(`exported 199 predictions and 1 rejects of lin-job ${D2} \\(run ${linRun}\\) as a bundle`),
    );
    const e2 = await cli(db, ['export', 'text-job', '--date', D1, '--out', textDir, '--json']);
    assert.equal(e2.code, 0, e2.stderr);
    assert.equal((JSON.parse(e2.stdout) as { runId: string }).runId, textRun);
  });
  after(async () => {
    await db?.drop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('the bundle holds the run, the exact model bytes and a manifest hashing every file', async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(linDir, 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(manifest.job, 'lin-job');
    assert.equal(manifest.date, D2);
    assert.equal(manifest.runId, linRun);
    assert.deepEqual(manifest.features, F);
    assert.equal(manifest.rows, 199);
    assert.equal(manifest.rejected, 1);
    assert.deepEqual(manifest.model.name, 'lin');
    const onnx = fs.readFileSync(path.join(linDir, 'model.onnx'));
    const registered = await db.pool.query<{ onnx: Buffer }>(
      "SELECT onnx FROM prescore.models WHERE name = 'lin' AND version = 1",
    );
    assert.ok(onnx.equals(registered.rows[0]!.onnx), 'model.onnx is the registered bytes');
    assert.deepEqual(Object.keys(manifest.files).sort(), ['model.onnx', 'predictions.arrow', 'rejects.arrow']);
    const table = tableFromIPC(fs.readFileSync(path.join(linDir, 'predictions.arrow')));
    assert.deepEqual(
      table.schema.fields.map((f) => f.name),
      ['key', 'score', 'label', 'outputs'],
    );
    const stored = await storedRows(db, linRun);
    assert.equal(table.numRows, stored.size);
    for (const row of table) {
      const r = row.toJSON() as { key: string; score: number };
      assert.equal(r.score, stored.get(r.key)!.score);
    }
  });

  test('served with PostgreSQL unreachable, the bundle answers byte for byte as the API did', async () => {
    for (const [job, dir] of [
      ['lin-job', linDir],
      ['text-job', textDir],
    ] as const) {
      const server = await serveBundle(dir, { DATABASE_URL: CLOSED_DB });
      let compared = 0;
      try {
        for (const [i, r] of requests.entries()) {
          if (!r.path.includes(`/${job}`) && !(job === 'lin-job' && r.path.includes('no-such-job'))) continue;
          const got = await ask(server.base, r);
          assert.deepEqual(got, before_[i], `${r.method} ${r.path} ${JSON.stringify(r.body ?? '')}`);
          compared++;
        }
        assert.ok(compared >= 7, `${job}: compared ${compared} answers`);
      } finally {
        const done = await server.stop();
        assert.equal(done.code, 0, done.stderr);
      }
    }
  });

  test('without DATABASE_URL no embedded PostgreSQL starts; POST /v1/score scores with the bundled model', async () => {
    const home = fs.mkdtempSync(path.join(tmp, 'home-'));
    const server = await serveBundle(linDir, { DATABASE_URL: undefined, PRESCORE_HOME: home, PRESCORE_EMBEDDED_DIR: home });
    try {
      const source = await sourceRows(db.pool, 'feats', 4, D2);
      const stored = await storedRows(db, linRun);
      const keys = ['2', '100', BIG];
      const rows = keys.map((key) => ({ key, features: Object.fromEntries(F.map((f, i) => [f, source.get(key)![i]])) }));
      const r = await request<{ predictions: { key: string; score: number; model: unknown }[] }>(
        server.base,
        '/v1/score/lin-job',
        {
          body: { rows },
        },
      );
      assert.equal(r.status, 200, r.text);
      r.body.predictions.forEach((p, i) => {
        assert.equal(p.key, keys[i]);
        assert.deepEqual(p.model, { name: 'lin', version: 1 });
        assertClose(p.score, stored.get(p.key)!.score!, 1e-6, `key ${p.key}`);
      });
      const bad = await request<{ error: string }>(server.base, '/v1/score/lin-job', {
        body: { rows: [{ key: 'x', features: { f0: 1, f1: 2, f2: 3 } }] },
      });
      assert.equal(bad.status, 400);
      assert.match(bad.body.error, /^rows\[0\] \(key "x"\): feature "f3" is missing/);
      const other = await request<{ error: string }>(server.base, '/v1/score/text-job', { body: { rows } });
      assert.equal(other.status, 404);
      assert.match(other.body.error, /not in this bundle/);
    } finally {
      await server.stop();
    }
    assert.deepEqual(fs.readdirSync(home), [], 'nothing was written where an embedded PostgreSQL would live');
  });

  test('openBundle: look keys up and score locally, as the API answers', async () => {
    const bundle = await openBundle(linDir);
    try {
      assert.equal(bundle.manifest.runId, linRun);
      const i = requests.findIndex((r) => r.path === '/v1/predictions/lin-job/77');
      assert.deepEqual(bundle.get('77'), JSON.parse(before_[i]!.text));
      assert.equal(bundle.get('9999'), undefined);
      assert.equal(bundle.get('5'), undefined);
      assert.equal(bundle.rejected('5'), 'NULL in column f2');
      const j = requests.findIndex((r) => r.method === 'POST' && r.path === '/v1/predictions/lin-job');
      assert.deepEqual(bundle.getMany(['3', '5', '9999', BIG, '3', '150']), JSON.parse(before_[j]!.text));
      const source = await sourceRows(db.pool, 'feats', 4, D2);
      const stored = await storedRows(db, linRun);
      const keys = [...stored.keys()].slice(0, 50);
      const scored = await bundle.score(
        keys.map((key) => ({ key, features: Object.fromEntries(F.map((f, n) => [f, source.get(key)![n]!])) })),
      );
      scored.forEach((p, n) => assertClose(p.score!, stored.get(keys[n]!)!.score!, 1e-6, `key ${keys[n]}`));
      await assert.rejects(
        bundle.score([{ key: 'k', features: { f0: 1, f1: 2, f2: 3, f3: 4, f4: 5 } }]),
        /rows\[0\] \(key "k"\): unknown feature "f4"/,
      );
    } finally {
      await bundle.close();
      await bundle.close();
    }
    const text = await openBundle(textDir);
    try {
      const stored = await storedRows(db, textRun);
      assert.deepEqual(text.get('😀')?.outputs, stored.get('😀')!.outputs);
      assert.equal(text.get('😀')?.label, stored.get('😀')!.label);
    } finally {
      await text.close();
    }
  });

  test('a changed byte in any file, a missing file or an edited manifest is refused, naming the file', async () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        'predictions',
        (d) => {
          const f = path.join(d, 'predictions.arrow');
          const b = fs.readFileSync(f);
          b[Math.floor(b.length / 2)] ^= 1;
          fs.writeFileSync(f, b);
        },
        /predictions\.arrow does not match its sha256 in manifest\.json/,
      ],
      [
        'model',
        (d) => {
          const f = path.join(d, 'model.onnx');
          const b = fs.readFileSync(f);
          b[b.length - 1] ^= 0x40;
          fs.writeFileSync(f, b);
        },
        /model\.onnx does not match its sha256 in manifest\.json/,
      ],
      ['missing', (d) => fs.rmSync(path.join(d, 'rejects.arrow')), /rejects\.arrow is missing/],
      [
        'manifest',
        (d) => {
          const f = path.join(d, 'manifest.json');
          fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('"version": 1', '"version": 2'));
        },
        /manifest\.json does not match its own sha256/,
      ],
      ['no-manifest', (d) => fs.rmSync(path.join(d, 'manifest.json')), /manifest\.json is missing/],
    ];
    for (const [name, tamper, want] of cases) {
      const dir = copyDir(linDir, path.join(tmp, `tampered-${name}`));
      tamper(dir);
      await assert.rejects(openBundle(dir), (err: Error) => {
        assert.match(err.message, want, name);
        assert.ok(err.message.includes(dir), err.message);
        return true;
      });
    }
    // The server refuses it too, before it listens, and exits 2 naming the file.
    const r = await cli(null, ['serve', '--bundle', path.join(tmp, 'tampered-predictions'), '--port', '0'], {
      DATABASE_URL: CLOSED_DB,
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.lastError, /^error: bundle .*tampered-predictions: predictions\.arrow does not match its sha256/);
    // A manifest pinned by its sha256 refuses an otherwise consistent bundle of another run.
    const pinned = await openBundle(linDir, { sha256: '0'.repeat(64) }).catch((e: Error) => e);
    assert.match(String(pinned), /manifest\.json has sha256 [0-9a-f]{64}, not the expected 0{64}/);
  });

  test('a client that sends its request slowly, or never finishes it, is cut off as by prescore serve', async () => {
    const api = buildBundleApi(BundleStore.open(linDir), silentLogger, { requestTimeoutMs: 500 });
    try {
      const base = await api.app.listen({ port: 0, host: '127.0.0.1' });
      for (const { partial } of SLOW_REQUESTS) await assertCutOff(base, partial);
      assert.equal((await request(base, '/healthz')).status, 200);
    } finally {
      await api.close();
    }
  });

  test('a bundle directory that does not exist, or an --out that is not a bundle, is a clear error', async () => {
    const nope = path.join(tmp, 'no-such-bundle');
    const r = await cli(null, ['serve', '--bundle', nope], { DATABASE_URL: CLOSED_DB });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.lastError, `error: bundle ${nope} does not exist: export one with prescore export <job> --out ${nope}`);
    const busy = fs.mkdtempSync(path.join(tmp, 'busy-'));
    fs.writeFileSync(path.join(busy, 'notes.txt'), 'mine');
    const e = await cli(db, ['export', 'lin-job', '--out', busy]);
    assert.equal(e.code, 2);
    assert.match(e.lastError, /--out .*busy-\w+ exists and is not a bundle/);
    assert.equal(fs.readFileSync(path.join(busy, 'notes.txt'), 'utf8'), 'mine');
    const none = await cli(db, ['export', 'no-job', '--out', path.join(tmp, 'x')]);
    assert.equal(none.code, 2);
    assert.match(none.lastError, /job no-job has no published run/);
    // Exporting again over a bundle replaces it whole.
    const again = await cli(db, ['export', 'lin-job', '--date', D1, '--out', linDir, '--json']);
    assert.equal(again.code, 0, again.stderr);
    const b = await openBundle(linDir);
    assert.equal(b.manifest.date, D1);
    await b.close();
  });
});
