import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readMigrations } from '../src/db/migrate.js';
import { cli, createTestDb, type TestDb } from './helpers.js';

describe('prescore migrate', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('migrate');
  });
  after(async () => db.drop());

  test('from three processes at once, then again: each migration applied exactly once', async () => {
    const results = await Promise.all([1, 2, 3].map(() => cli(db, ['migrate'])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(results.filter((r) => r.stdout.startsWith('applied')).length, 1);
    const again = await cli(db, ['migrate']);
    assert.equal(again.stdout.trim(), 'schema is up to date');
    const ledger = await db.pool.query<{ name: string }>('SELECT name FROM prescore.migrations ORDER BY id');
    assert.deepEqual(
      ledger.rows.map((r) => r.name),
      readMigrations().map((m) => m.name),
    );
  });

  test('refuses a database whose history this version does not know', async () => {
    await db.pool.query(`INSERT INTO prescore.migrations (id, name) VALUES (999, '999_from_the_future.sql')`);
    const r = await cli(db, ['migrate']);
    assert.notEqual(r.code, 0);
    assert.match(r.lastError, /has migration 999_from_the_future\.sql, which this prescore does not know: upgrade prescore/);
    await db.pool.query(`DELETE FROM prescore.migrations WHERE id = 999`);
  });
});
