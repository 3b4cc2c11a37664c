import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MODELS_DIR, cli, createTestDb, type TestDb } from './helpers.js';

describe('model registry', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('models');
  });
  after(async () => db.drop());

  test('stores bytes, sha256 and signature; same bytes again reuse the version', async () => {
    const file = path.join(MODELS_DIR, 'binary.onnx');
    const r1 = await cli(db, ['models', 'register', 'churn', file, '--alias', 'champion']);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stdout, /^registered churn v1 .*inputs x:float32\[\?,3\]; outputs label:int64 probabilities:float32/);
    const again = await cli(db, ['models', 'register', 'churn', file]);
    assert.match(again.stdout, /^already registered churn v1/);
    const r2 = await cli(db, ['models', 'register', 'churn', path.join(MODELS_DIR, 'multiclass.onnx'), '--alias', 'challenger']);
    assert.match(r2.stdout, /^registered churn v2/);
    const stored = await db.pool.query<{ onnx: Buffer; sha256: string }>(
      `SELECT onnx, sha256 FROM prescore.models WHERE name = 'churn' AND version = 1`,
    );
    const bytes = fs.readFileSync(file);
    assert.ok(stored.rows[0]!.onnx.equals(bytes));
    assert.equal(stored.rows[0]!.sha256, crypto.createHash('sha256').update(bytes).digest('hex'));
  });

  test('promote moves an alias; list shows it', async () => {
    const p = await cli(db, ['models', 'promote', 'churn', '2', '--alias', 'champion']);
    assert.equal(p.code, 0, p.stderr);
    const list = JSON.parse((await cli(db, ['models', 'list', '--json'])).stdout) as {
      name: string;
      version: number;
      aliases: string[];
    }[];
    assert.deepEqual(
      list.map((m) => [m.name, m.version, m.aliases]),
      [
        ['churn', 1, []],
        ['churn', 2, ['challenger', 'champion']],
      ],
    );
    const bad = await cli(db, ['models', 'promote', 'churn', '7', '--alias', 'champion']);
    assert.equal(bad.code, 2);
    assert.match(bad.lastError, /model churn has no version 7/);
  });

  test('explicit versions are immutable', async () => {
    const r = await cli(db, ['models', 'register', 'churn', path.join(MODELS_DIR, 'mlp.onnx'), '--version', '2']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /model churn version 2 already exists; versions are immutable/);
  });

  test('names are checked', async () => {
    const r = await cli(db, ['models', 'register', 'Bad Name', path.join(MODELS_DIR, 'mlp.onnx')]);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /model name "Bad Name" must match/);
  });
});
