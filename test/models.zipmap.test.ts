import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { registerModel } from '../src/models/registry.js';
import { ZIPMAP_REFUSALS, zipmapModel } from './fixtures/models.js';
import {
  MODELS_DIR,
  assertClose,
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  servedPredictions,
  sourceRows,
  writeJob,
  type TestDb,
} from './helpers.js';

const DATE = '2026-11-21';
const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

/** A classifier exported with ZipMap (skl2onnx's default) is registered without it, and scores. */
describe('ZipMap classifiers are rewritten at registration', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('zipmap');
  });
  after(async () => db.drop());

  const file = path.join(MODELS_DIR, 'zipmap.onnx');

  test('register removes the ZipMap and records from which sha256; show and list say so', async () => {
    const original = fs.readFileSync(file);
    const r = await cli(db, ['models', 'register', 'zm', file, '--alias', 'champion']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `^registered zm v1 .*outputs output_label:int64 output_probability:float32\\), alias champion; rewritten from sha256 ${sha(original).slice(0, 12)}: ZipMap removed`,
      ),
    );
    const stored = await db.pool.query<{ onnx: Buffer; sha256: string }>(
      `SELECT onnx, sha256 FROM prescore.models WHERE name = 'zm'`,
    );
    assert.equal(stored.rows[0]!.sha256, sha(stored.rows[0]!.onnx));
    assert.notEqual(stored.rows[0]!.sha256, sha(original));
    const show = await cli(db, ['models', 'show', 'zm@champion', '--json']);
    assert.equal(show.code, 0, show.stderr);
    const m = JSON.parse(show.stdout) as {
      sha256: string;
      rewrite: { from: string; note: string };
      signature: { outputs: { name: string; type: string; shape: (number | null)[] }[] };
    };
    assert.equal(m.sha256, stored.rows[0]!.sha256);
    assert.equal(m.rewrite.from, sha(original));
    assert.match(m.rewrite.note, /output_probability is the \[N, 2\] float tensor/);
    assert.deepEqual(m.signature.outputs.at(-1), { name: 'output_probability', type: 'float32', shape: [null, 2] });
    const list = await cli(db, ['models', 'list']);
    assert.match(list.stdout, new RegExp(`REWRITTEN[\\s\\S]*from ${sha(original).slice(0, 12)}`));
    // The same exported file again: the same rewritten bytes, the same version.
    const again = await cli(db, ['models', 'register', 'zm', file]);
    assert.match(again.stdout, /^already registered zm v1/);
  });

  test('every stored score is the probability tensor, within 1e-6', async () => {
    const model = zipmapModel();
    await seedFeatures(db.pool, 'zm_feat', { rows: 1500, features: model.features, date: DATE });
    writeJob(db, jobSpec('zm-job', 'zm@champion', 'zm_feat', featureNames(model.features), { output: model.output }));
    const run = await cli(db, ['run', 'zm-job', '--date', DATE]);
    assert.equal(run.code, 0, run.stderr);
    const source = await sourceRows(db.pool, 'zm_feat', model.features, DATE);
    const served = await servedPredictions(db.pool, 'zm-job', DATE);
    assert.equal(served.rows.size, 1500);
    for (const [key, x] of source) {
      const got = served.rows.get(key)!;
      const want = model.expect(x);
      assertClose(got.score!, want.score!, 1e-6, `key ${key} score`);
      assert.equal(got.label, want.label, `key ${key} label`);
      want.outputs!.forEach((v, i) => assertClose(got.outputs![i]!, v, 1e-6, `key ${key} outputs[${i}]`));
    }
  });

  const refusals: Record<(typeof ZIPMAP_REFUSALS)[number], RegExp> = {
    'shared-input':
      /output "output_probability": the probability tensor "probability_tensor" the ZipMap reads also feeds node Identity_2/,
    'two-zipmaps': /has 2 ZipMap nodes \(outputs output_probability, output_probability2\)/,
    'output-consumed': /the ZipMap output "output_probability" feeds node Identity_2, not only the graph output/,
    'double-input':
      /output "output_probability": the ZipMap reads "probability_tensor", a double tensor, where ZipMap takes float/,
    'label-mismatch':
      /output "output_probability": its ZipMap labels the classes \[0, 1\] but LinearClassifier \(label output "output_label"\) has \[1, 2\]/,
    'input-is-output':
      /output "output_probability": the probability tensor "probability_tensor" the ZipMap reads is already a graph input or output/,
  };
  for (const variant of ZIPMAP_REFUSALS) {
    test(`an ambiguous rewrite is refused: ${variant}`, async () => {
      const m = zipmapModel(variant);
      await assert.rejects(registerModel(db.pool, { name: 'zmbad', bytes: m.bytes, file: `${m.name}.onnx` }), (err: Error) => {
        assert.match(err.message, new RegExp(`^${m.name}\\.onnx: `));
        assert.match(err.message, refusals[variant]);
        assert.match(
          err.message,
          /export the classifier without ZipMap \(skl2onnx: options=\{id\(model\): \{'zipmap': False\}\}\)/,
        );
        return true;
      });
    });
  }

  test('nothing of a refused model is stored', async () => {
    const rows = await db.pool.query(`SELECT 1 FROM prescore.models WHERE name = 'zmbad'`);
    assert.equal(rows.rowCount, 0);
  });
});
