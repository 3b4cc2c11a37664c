import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cli, createTestDb, registerModel, featureNames, jobSpec, seedFeatures, writeJob, type TestDb } from './helpers.js';

describe('prescore jobs', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('jobs');
    await seedFeatures(db.pool, 'feats', { rows: 10, features: 4, date: '2026-11-01' });
    await registerModel(db, 'lin', 'linear-float32');
  });
  after(async () => db.drop());

  test('a valid job validates against the catalog and the model', async () => {
    writeJob(
      db,
      jobSpec('ok-job', 'lin@champion', 'feats', featureNames(4), {
        schedule: { cron: '30 2 * * *', timezone: 'Europe/Berlin' },
      }),
    );
    const r = await cli(db, ['jobs', 'validate', 'ok-job']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok {2}ok-job: 4 features from public\.feats -> lin v1/);
    const list = await cli(db, ['jobs', 'list', '--json']);
    const jobs = JSON.parse(list.stdout) as { name: string; valid: boolean; nextFire: { local: string } | null }[];
    const { nextFire, ...listed } = jobs.find((j) => j.name === 'ok-job')!;
    assert.deepEqual(listed, {
      name: 'ok-job',
      model: 'lin@champion',
      table: 'feats',
      schedule: { cron: '30 2 * * *', timezone: 'Europe/Berlin', dateOffsetDays: 0, catchUpDays: 3 },
      paused: false,
      newestPublished: null,
      valid: true,
      error: null,
    });
    assert.match(nextFire!.local, /^\d{4}-\d\d-\d\d 02:30 (CET|CEST|GMT\+[12])$/);
    fs.rmSync(path.join(db.jobsDir, 'ok-job.json'));
  });

  test('a broken job file reports every problem at once, naming file and field', async () => {
    fs.writeFileSync(
      path.join(db.jobsDir, 'broken.json'),
      JSON.stringify({
        name: 'Broken Job',
        model: 'lin',
        schedule: { cron: 'every night', timezone: 'Mars/Olympus' },
        source: { table: 'feats', key: 'id', features: [] },
        chunkRows: 12,
        onBadRow: 'ignore',
        colour: 'blue',
      }),
    );
    const r = await cli(db, ['jobs', 'validate', 'broken']);
    assert.equal(r.code, 2);
    for (const expected of [
      /name: must match \[a-z0-9\]/,
      /model: must be name@alias or name@version/,
      /schedule\.cron: must be a 5-field cron expression/,
      /schedule\.timezone: must be an IANA time zone/,
      /source\.partition: is required/,
      /source\.features: must list at least one feature column/,
      /chunkRows: must be at least 1000/,
      /onBadRow: /,
      /unknown field\(s\) colour/,
    ]) {
      assert.match(r.stderr, expected);
    }
    assert.match(r.lastError, /^error: .*broken\.json: \d+ problems/);
    fs.rmSync(path.join(db.jobsDir, 'broken.json'));
  });

  test('catalog problems are reported together, each with its fix', async () => {
    await db.pool.query(`CREATE TABLE dup (id int, as_of date, a real, b real, c real, d real)`);
    await db.pool.query(`INSERT INTO dup VALUES (1, '2026-11-01', 1, 2, 3, 4), (1, '2026-11-01', 1, 2, 3, 4)`);
    writeJob(db, jobSpec('dupjob', 'lin@champion', 'dup', ['a', 'b', 'c', 'x']));
    const r = await cli(db, ['jobs', 'validate', 'dupjob']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /source\.features\[3\]: column "x" does not exist in dup/);
    writeJob(db, jobSpec('dupjob', 'lin@champion', 'dup', ['a', 'b', 'c', 'd']));
    const r2 = await cli(db, ['jobs', 'validate', 'dupjob']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /source\.key: key 1 appears more than once on 2026-11-01: the key must be unique per date/);
  });

  test('the file name and the job name must agree', async () => {
    fs.writeFileSync(
      path.join(db.jobsDir, 'other.json'),
      JSON.stringify(jobSpec('not-other', 'lin@champion', 'feats', featureNames(4))),
    );
    const r = await cli(db, ['jobs', 'validate', 'other']);
    assert.equal(r.code, 2);
    assert.match(r.lastError, /name: is "not-other" but the file is other\.json/);
    fs.rmSync(path.join(db.jobsDir, 'other.json'));
  });
});
