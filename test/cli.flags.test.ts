import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cli, createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

const DATE = '2026-11-17';

/** Numeric flags and ids are checked while the command line is read: exit 2, nothing planned. */
describe('numeric flags and ids', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('flags');
    await seedFeatures(db.pool, 'feats', { rows: 100, features: 4, date: DATE });
    await registerModel(db, 'lin', 'linear-float32');
    writeJob(db, jobSpec('flags', 'lin@champion', 'feats', featureNames(4)));
  });
  after(async () => db.drop());

  const cases: [string[], RegExp][] = [
    ...['abc', '0', '-3', '1.5', '1e3', ''].map((v): [string[], RegExp] => [
      ['run', 'flags', '--date', DATE, `--concurrency=${v}`],
      new RegExp(`^error: --concurrency must be a whole number from 1 to 256 \\(got "${v.replace('.', '\\.')}"\\)`),
    ]),
    [
      ['backfill', 'flags', '--from', DATE, '--to', DATE, '--concurrency', 'x'],
      /^error: --concurrency must be a whole number from 1 to 64/,
    ],
    [['worker', '--concurrency', '0'], /^error: --concurrency must be a whole number from 1 to 256 \(got "0"\)/],
    ...['abc', '0', '-1', '100000'].map((v): [string[], RegExp] => [
      ['runs', 'list', `--limit=${v}`],
      new RegExp(`^error: --limit must be a whole number from 1 to 10000 \\(got "${v}"\\)`),
    ]),
    [
      ['runs', 'show', '99999999999999999999999'],
      /^error: run id must be a positive whole number \(got "99999999999999999999999"\): see prescore runs list/,
    ],
    [['runs', 'show', '9223372036854775808'], /^error: run id must be a positive whole number/],
    [['runs', 'show', 'abc'], /^error: run id must be a positive whole number \(got "abc"\)/],
    [['runs', 'retry', '0'], /^error: run id must be a positive whole number \(got "0"\)/],
    [['runs', 'cancel', '1.5'], /^error: run id must be a positive whole number/],
    [['serve', '--port', '70000'], /^error: --port must be a whole number from 0 to 65535 \(got "70000"\)/],
    [['serve', '--ops-port', 'x'], /^error: --ops-port must be a whole number from 0 to 65535/],
  ];

  for (const [args, message] of cases) {
    test(args.join(' '), async () => {
      const r = await cli(db, args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.lastError, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
  }

  test('none of them planned a run', async () => {
    assert.equal((await db.pool.query('SELECT count(*)::int AS n FROM prescore.runs')).rows[0].n, 0);
  });

  test('the largest run id is a valid id that does not exist', async () => {
    const r = await cli(db, ['runs', 'show', '9223372036854775807']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /^error: run 9223372036854775807 does not exist/);
  });
});
