import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import cliProgress from 'cli-progress';
import { LogAbove } from '../src/cli/progress.js';
import { packageRoot } from '../src/paths.js';
import { createTestDb, featureNames, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

/** A terminal that records what is written to it. */
function fakeTerminal(): Writable & { isTTY: boolean; columns: number; text(): string } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  }) as Writable & { isTTY: boolean; columns: number; text(): string };
  stream.isTTY = true;
  stream.columns = 100;
  stream.text = () => out;
  return stream;
}

/** The screen's lines without escape sequences and carriage returns. */
function plainLines(text: string): string[] {
  return text
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .split(/\r?\n/)
    .map((l) => l.replace(/^.*\r/, ''));
}

describe('log lines and progress bars', () => {
  test('a line written while bars are drawn lands on a line of its own above them, none is lost at stop', () => {
    const term = fakeTerminal();
    const multi = new cliProgress.MultiBar(
      { stream: term, fps: 5, clearOnComplete: false, format: 'BAR {bar} {value}/{total}' },
      cliProgress.Presets.shades_classic,
    );
    const above = new LogAbove(multi, term);
    above.write('before the bars');
    assert.ok(term.text().startsWith('before the bars\n'), 'written straight away before a bar exists');
    const bar = multi.create(10, 3);
    above.write('while drawing 1');
    bar.update(5);
    above.write('while drawing 2\n');
    above.stop(); // right away: the lines still wait for the next frame
    above.write('after the bars');
    const lines = plainLines(term.text());
    for (const l of ['while drawing 1', 'while drawing 2']) {
      assert.ok(lines.includes(l), `${JSON.stringify(l)} on a line of its own in ${JSON.stringify(lines)}`);
    }
    const i2 = lines.indexOf('while drawing 2');
    const lastBar = lines.reduce((last, l, i) => (l.startsWith('BAR ') ? i : last), -1);
    assert.ok(lastBar > i2, 'the bar is redrawn below the log lines');
    assert.equal(lines.filter((l) => l.includes('while drawing')).length, 2, 'each line once');
    assert.equal(lines.at(-2), 'after the bars');
    assert.equal(multi.isActive, false);
  });
});

describe('backfill without a terminal', () => {
  let db: TestDb;
  const DATES = ['2026-07-01', '2026-07-02', '2026-07-03'];
  before(async () => {
    db = await createTestDb('termout');
    await registerModel(db, 'lin', 'linear-float32');
    // The first date is much the largest: with 3 runs at once it ends last.
    await seedFeatures(db.pool, 'feats', { rows: 60_000, features: 4, date: DATES[0]! });
    for (const d of DATES.slice(1)) await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: d });
    writeJob(db, jobSpec('bf', 'lin@champion', 'feats', featureNames(4), { chunkRows: 10_000 }));
  });
  after(async () => {
    await db?.drop();
  });

  test('prints one line per date in date order, then its summary last (stdout and stderr on one pipe)', async () => {
    const file = path.join(os.tmpdir(), `prescore-termout-${process.pid}.txt`);
    const fd = fs.openSync(file, 'w');
    try {
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn(
          process.execPath,
          [
            path.join(packageRoot, 'bin', 'prescore.js'),
            'backfill',
            'bf',
            '--from',
            DATES[0]!,
            '--to',
            DATES[2]!,
            '--local',
            '--concurrency',
            '3',
          ],
          {
            env: { ...process.env, DATABASE_URL: db.url, PRESCORE_JOBS_DIR: db.jobsDir, PRESCORE_LOG_LEVEL: 'error' },
            stdio: ['ignore', fd, fd],
          },
        );
        child.on('close', resolve);
      });
      const out = fs.readFileSync(file, 'utf8');
      assert.equal(code, 0, out);
      const lines = out.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
      assert.equal(lines.length, 4, out);
      DATES.forEach((d, i) => assert.match(lines[i]!, new RegExp(`^${d} published \\(run \\d+\\)$`), out));
      assert.match(lines[3]!, /^backfill bf 2026-07-01\.\.2026-07-03: 3 published; 62,000 rows$/);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    }
  });
});
