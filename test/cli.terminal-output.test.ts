import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { LogAbove, terminalBars } from '../src/cli/progress.js';
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

/**
 * What a terminal shows after `text`: a small screen model of the sequences cli-progress writes
 * (line feed, carriage return, cursor to column, up/down, clear line, clear right).
 */
function screen(text: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  const put = (ch: string) => {
    const line = lines[row]!.padEnd(col);
    lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
    col++;
  };
  const tokens = text.match(/\x1b\[[0-9;?]*[A-Za-z]|[\s\S]/g) ?? [];
  for (const t of tokens) {
    if (t === '\n') {
      row++;
      col = 0;
      if (lines.length <= row) lines.push('');
    } else if (t === '\r') col = 0;
    else if (t.startsWith('\x1b[')) {
      const n = Number(t.slice(2, -1).replace('?', '')) || 0;
      const op = t.at(-1);
      if (op === 'G') col = Math.max(0, n - 1);
      else if (op === 'K') lines[row] = n === 2 ? '' : lines[row]!.slice(0, col);
      else if (op === 'A') row = Math.max(0, row - (n || 1));
      else if (op === 'B') row = Math.min(lines.length - 1, row + (n || 1));
    } else put(t);
  }
  return lines.map((l) => l.trimEnd());
}

describe('log lines and progress bars', () => {
  test('a line written while bars are drawn lands on a line of its own above them, none is lost at stop', () => {
    const term = fakeTerminal();
    const multi = terminalBars(term, 'BAR {bar} {value}/{total}');
    const above = new LogAbove(multi, term);
    above.write('before the bars');
    assert.ok(term.text().startsWith('before the bars\n'), 'written straight away before a bar exists');
    const bar = multi.create(10, 3);
    above.write('while drawing 1');
    bar.update(5);
    multi.update(); // a frame: the log line, then the bar at 5/10
    above.write('while drawing 2\n'); // the bar's text has not changed since: it must be drawn again all the same
    above.stop(); // right away: the lines still wait for the next frame
    above.write('after the bars');
    const lines = screen(term.text());
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
