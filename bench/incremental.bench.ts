import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freshBenchDatabase, runCli, type CliRun, registerBenchModel } from './support.js';

/**
 * `npm run bench:incremental`: BENCH_ROWS (default 2,000,000) rows x 32 float4 features, the
 * MLP. Day 1 is scored in full by each job; day 2 is day 1 with 1% of the rows changed. Then
 * day 2 through a full job, a `changedSince` job and a hash job; prints each run's own time
 * (its plan through its publish, as a scheduled run takes) and the CLI process's wall time, the
 * plan's and the carry-over's, whether the run is a layer, and the incremental runs' share of
 * the full run's time (changedSince: BENCH_REPEATS times, default 3, each beside a full run,
 * and the median share). Target: <= 15%. The source has an index on (date, updated_at) INCLUDE
 * (id), as the README asks of a changedSince job.
 */
const ROWS = Number(process.env.BENCH_ROWS ?? 2_000_000);
const FEATURES = 32;
const DAY1 = '2026-03-01';
const DAY2 = '2026-03-02';
const TABLE = 'bench_incr';
/** changedSince jobs, each with its own day 1: day 2 is measured this many times, each beside a full run. */
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);

async function seed(pool: pg.Pool): Promise<void> {
  const cols = Array.from({ length: FEATURES }, (_, i) => `f${i}`);
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (id bigint NOT NULL, as_of date NOT NULL, ${cols.map((c) => `${c} real`).join(', ')},
       updated_at timestamptz NOT NULL DEFAULT '2026-01-01', PRIMARY KEY (as_of, id))`,
  );
  // What a changedSince job wants (README): a date's changed keys read from an index alone.
  await pool.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_changed ON ${TABLE} (as_of, updated_at) INCLUDE (id)`);
  await pool.query(`DELETE FROM ${TABLE} WHERE as_of = $1`, [DAY2]);
  const have = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${TABLE} WHERE as_of = $1`, [DAY1]);
  if (have.rows[0]!.n !== ROWS) {
    await pool.query(`DELETE FROM ${TABLE} WHERE as_of = $1`, [DAY1]);
    await pool.query(
      `INSERT INTO ${TABLE} (id, as_of, ${cols.join(', ')})
       SELECT g, $1::date, ${cols.map((_, j) => `(sin(g * 0.001 + ${j}) * 2)::real`).join(', ')} FROM generate_series(1, $2::int) g`,
      [DAY1, ROWS],
    );
  }
  await pool.query('VACUUM ANALYZE ' + TABLE);
}

/** Day 2: day 1's rows as they were, then 1% of them changed (their timestamp set). */
async function changeDay2(pool: pg.Pool): Promise<void> {
  await pool.query(`DELETE FROM ${TABLE} WHERE as_of = $1`, [DAY2]);
  await pool.query(
    `INSERT INTO ${TABLE} SELECT id, $2, ${Array.from({ length: FEATURES }, (_, i) => `f${i}`).join(', ')}, updated_at FROM ${TABLE} WHERE as_of = $1`,
    [DAY1, DAY2],
  );
  await pool.query(`UPDATE ${TABLE} SET f0 = -f0, updated_at = now() WHERE as_of = $1 AND id % 100 = 7`, [DAY2]);
  await pool.query('VACUUM ANALYZE ' + TABLE);
}

function job(name: string, incremental?: object) {
  return {
    name,
    model: 'mlp@bench',
    source: { table: TABLE, key: 'id', partition: 'as_of', features: Array.from({ length: FEATURES }, (_, i) => `f${i}`) },
    chunkRows: 50_000,
    keepRuns: 2,
    ...(incremental ? { incremental } : {}),
  };
}

interface RunJson {
  /** The run's own time: its plan through its publish (what a scheduled run takes). */
  durationMs: number;
  rowsRead: number;
  rowsCarried: number;
  incremental: { full: boolean; changed?: number; carryMs?: number; planMs?: number; layerOn?: string } | null;
}

async function main(): Promise<void> {
  // Afresh each time: an earlier bench's runs of these jobs would be the base runs here.
  const url = await freshBenchDatabase('prescore_bench_incremental');
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const t = performance.now();
  await seed(pool);
  process.stderr.write(`seeded ${ROWS.toLocaleString()} rows in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bench-incr-'));
  const env = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'info' };
  await registerBenchModel('mlp', env);
  const jobs: [string, object | undefined][] = [
    ['bench-incr-full', undefined],
    ...Array.from({ length: REPEATS }, (_, i): [string, object] => [`bench-incr-since-${i + 1}`, { changedSince: 'updated_at' }]),
    ['bench-incr-hash', { mode: 'hash' }],
  ];
  for (const [name, inc] of jobs) fs.writeFileSync(path.join(jobsDir, `${name}.json`), JSON.stringify(job(name, inc)));
  const go = async (name: string, date: string, ...flags: string[]): Promise<{ run: CliRun; info: RunJson }> => {
    const run = await runCli(['run', name, '--date', date, '--json', ...flags], env);
    if (run.code !== 0) throw new Error(`${name} ${date}: ${run.stderr}`);
    return { run, info: JSON.parse(run.stdout) as RunJson };
  };
  const rows: string[] = [];
  const line = (what: string, r: { run: CliRun; info: RunJson }, full?: { run: CliRun; info: RunJson }) => {
    const inc = r.info.incremental;
    const share = (a: number, b: number) => `${((a / b) * 100).toFixed(1)}%`;
    const target = full
      ? `${share(r.info.durationMs, full.info.durationMs)} ${r.info.durationMs / full.info.durationMs <= 0.15 ? 'met' : 'MISSED'} ` +
        `(wall ${share(r.run.wallMs, full.run.wallMs)})`
      : '-';
    rows.push(
      `| ${what} | ${(r.info.durationMs / 1000).toFixed(2)} | ${(r.run.wallMs / 1000).toFixed(2)} | ${inc?.changed?.toLocaleString() ?? '-'} | ` +
        `${r.info.rowsCarried.toLocaleString()} | ${inc?.layerOn ? 'yes' : '-'} | ${inc?.planMs ?? '-'} | ${inc?.carryMs ?? '-'} | ${target} |`,
    );
  };
  // Day 1, in full by every job (the hash job stores its row hashes too).
  for (const [name] of jobs) line(`${name} day 1 (full)`, await go(name, DAY1));
  await changeDay2(pool);
  // Each changedSince run of day 2 beside a full run of day 2 just before it (the same work each
  // time): the machine's drift shows in the pair, and the median of the shares is the figure.
  const shares: number[] = [];
  let truth: { run: CliRun; info: RunJson } | undefined;
  for (let i = 1; i <= REPEATS; i++) {
    truth = await go('bench-incr-full', DAY2);
    line(`full job, day 2 (${i})`, truth);
    const since = await go(`bench-incr-since-${i}`, DAY2);
    line(`changedSince, day 2 (1% changed) (${i})`, since, truth);
    shares.push(since.info.durationMs / truth.info.durationMs);
  }
  line('hash, day 2 (1% changed)', await go('bench-incr-hash', DAY2), truth!);
  line('hash, day 2 --full', await go('bench-incr-hash', DAY2, '--full'), truth!);
  const median = [...shares].sort((a, b) => a - b)[Math.floor(shares.length / 2)]!;
  const out = (s: string) => process.stdout.write(s + '\n');
  out(`\nincremental runs, ${ROWS.toLocaleString()} rows x ${FEATURES} float4 features, MLP, ${os.availableParallelism()} cores`);
  out(
    "| run | run s | process wall s | rows scored (changed) | rows carried | a layer | incremental plan ms | carry-over ms | run time of the full run's (target <= 15%) |",
  );
  out('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) out(r);
  out(
    `\nchangedSince run time, median of ${REPEATS} against the full run beside it: ${(median * 100).toFixed(1)}% ` +
      `(${shares.map((x) => `${(x * 100).toFixed(1)}%`).join(', ')}), target <= 15%: ${median <= 0.15 ? 'met' : 'MISSED'}`,
  );
  await pool.end();
  fs.rmSync(jobsDir, { recursive: true, force: true });
}

await main();
