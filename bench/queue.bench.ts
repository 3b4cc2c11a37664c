import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { spawn } from 'node:child_process';
import { packageRoot } from '../src/paths.js';
import { benchDatabase, runCli, registerBenchModel } from './support.js';

/**
 * `npm run bench:queue`: the same 500,000-row MLP run three ways — in one process, through
 * BullMQ on Redis, and through BullMQ's PostgreSQL backend — with one worker process of
 * concurrency 2 for the queued runs. Prints rows/s for each, so the cost of the queue (and of
 * keeping it in PostgreSQL) is measured, not guessed.
 */
const ROWS = Number(process.env.BENCH_QUEUE_ROWS ?? 500_000);
const DATE = '2026-02-01';
const FEATURES = 32;

async function main(): Promise<void> {
  const url = await benchDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const cols = Array.from({ length: FEATURES }, (_, i) => `f${i}`);
  await pool.query(
    `CREATE UNLOGGED TABLE IF NOT EXISTS bench_queue (id bigint NOT NULL, as_of date NOT NULL, ${cols.map((c) => `${c} real`).join(', ')},
       PRIMARY KEY (as_of, id))`,
  );
  const have = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM bench_queue WHERE as_of = $1', [DATE]);
  if (have.rows[0]!.n !== ROWS) {
    await pool.query('DELETE FROM bench_queue WHERE as_of = $1', [DATE]);
    await pool.query(
      `INSERT INTO bench_queue SELECT g, $1::date, ${cols.map((_, j) => `(sin(g * 0.001 + ${j}) * 2)::real`).join(', ')} FROM generate_series(1, $2::int) g`,
      [DATE, ROWS],
    );
    await pool.query('VACUUM ANALYZE bench_queue');
  }
  await pool.end();
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-qbench-'));
  fs.writeFileSync(
    path.join(jobsDir, 'bench-queue.json'),
    JSON.stringify({
      name: 'bench-queue',
      model: 'mlp@bench',
      source: { table: 'bench_queue', key: 'id', partition: 'as_of', features: cols },
      chunkRows: 50_000,
      keepRuns: 1,
    }),
  );
  const base = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'warn' };
  await registerBenchModel('mlp', base);

  const out: string[] = [];
  const local = await runCli(['run', 'bench-queue', '--date', DATE], base);
  out.push(`| in one process (prescore run) | ${Math.round(ROWS / (local.wallMs / 1000)).toLocaleString()} |`);
  for (const [label, env] of [
    [
      'BullMQ on Redis (run --queue, 1 worker x 2)',
      { ...base, REDIS_URL: 'redis://127.0.0.1:6379', PRESCORE_QUEUE_PREFIX: 'prescore_bench' },
    ],
    ['BullMQ PostgreSQL backend (run --queue, 1 worker x 2)', { ...base }],
  ] as const) {
    const worker = spawn(process.execPath, [path.join(packageRoot, 'bin', 'prescore.js'), 'worker', '--concurrency', '2'], {
      env: { ...process.env, ...env, PRESCORE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    worker.stderr.on('data', (d: Buffer) => (log += d.toString()));
    while (!/worker started/.test(log)) await new Promise((r) => setTimeout(r, 50));
    const run = await runCli(['run', 'bench-queue', '--date', DATE, '--queue'], env);
    if (run.code !== 0) throw new Error(run.stderr);
    out.push(`| ${label} | ${Math.round(ROWS / (run.wallMs / 1000)).toLocaleString()} |`);
    worker.kill('SIGTERM');
    await new Promise((r) => worker.on('close', r));
  }
  process.stdout.write(
    `\n${ROWS.toLocaleString()} rows x ${FEATURES} features, MLP, chunkRows 50,000, end to end (CLI start to publish)\n`,
  );
  process.stdout.write('| how | rows/s |\n|---|---|\n' + out.join('\n') + '\n');
  fs.rmSync(jobsDir, { recursive: true, force: true });
}

await main();
