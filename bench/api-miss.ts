import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { linearModel } from '../test/fixtures/models.js';
import { packageRoot } from '../src/paths.js';
import { publishBenchJob, runCli, startListening, stopChild } from './support.js';

/**
 * The compute-on-miss scenario of `npm run bench:api`: a job with `serving.onMiss: "compute"`
 * whose run scored 1,000 rows; MISS_ROWS rows arrive for the same date afterwards, and 50
 * connections GET random keys among them: every answer is computed (source query + inference).
 * Target (printed, not asserted): p99 <= 20 ms.
 */
const JOB = 'bench-api-miss';
const DATE = '2026-01-02';
const RUN_ROWS = 1000;
const MISS_ROWS = Number(process.env.BENCH_API_MISS_ROWS ?? 100_000);
const CONNECTIONS = 50;
const HOST = '127.0.0.1';

async function prepare(url: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bench-miss-'));
  const env = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'warn' };
  try {
    const migrated = await runCli(['migrate'], env);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const { rows } = await pool.query(
      `SELECT 1 FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id
        WHERE s.job = $1 AND s.date = $2 AND r.rows_written = $3`,
      [JOB, DATE, RUN_ROWS],
    );
    const count = await pool
      .query<{ n: string }>('SELECT count(*) AS n FROM bench_api_miss_features WHERE as_of = $1', [DATE])
      .catch(() => ({ rows: [{ n: '0' }] }));
    if (rows.length > 0 && Number(count.rows[0]!.n) === RUN_ROWS + MISS_ROWS) return;
    await pool.query(`CREATE UNLOGGED TABLE IF NOT EXISTS bench_api_miss_features (id bigint NOT NULL, as_of date NOT NULL,
                        f0 real, f1 real, f2 real, f3 real, PRIMARY KEY (as_of, id))`);
    await pool.query('DELETE FROM bench_api_miss_features WHERE as_of = $1', [DATE]);
    const fill = (from: number, to: number) =>
      pool.query(
        `INSERT INTO bench_api_miss_features SELECT g, $1::date, sin(g), cos(g), sin(g * 0.5), cos(g * 0.25)
           FROM generate_series($2::int, $3::int) g`,
        [DATE, from, to],
      );
    await fill(1, RUN_ROWS);
    await publishBenchJob(
      JOB,
      linearModel().bytes,
      {
        source: { table: 'bench_api_miss_features', key: 'id', partition: 'as_of', features: ['f0', 'f1', 'f2', 'f3'] },
        serving: { onMiss: 'compute' },
        keepRuns: 1,
      },
      DATE,
      env,
    );
    // The rows the run never saw: every key asked for below is missing from it.
    await fill(RUN_ROWS + 1, RUN_ROWS + MISS_ROWS);
    await pool.query('VACUUM ANALYZE bench_api_miss_features');
  } finally {
    await pool.end();
    fs.rmSync(jobsDir, { recursive: true, force: true });
  }
}

/** Runs the scenario against a fresh `prescore serve`; returns the lines to print. */
export async function missScenario(url: string, seconds: number): Promise<string[]> {
  await prepare(url);
  const cli = path.join(packageRoot, 'bin', 'prescore.js');
  // --cache-mb 0: the bench database holds other benches' big runs, which the server would load
  // into memory beside the misses it measures (a miss is a source query either way).
  const { url: base, child } = await startListening([cli, 'serve', '--port', '0', '--host', HOST, '--cache-mb', '0'], {
    DATABASE_URL: url,
    PRESCORE_LOG_LEVEL: 'warn',
  });
  const key = () => String(RUN_ROWS + 1 + Math.floor(Math.random() * MISS_ROWS));
  const load = (duration: number) =>
    autocannon({
      url: base,
      connections: CONNECTIONS,
      duration,
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `/v1/predictions/${JOB}/${key()}` }) }],
    });
  try {
    const probe = await fetch(`${base}/v1/predictions/${JOB}/${key()}`);
    const body = (await probe.json()) as { source?: string };
    if (probe.status !== 200 || body.source !== 'computed')
      throw new Error(`a missing key answered ${probe.status} ${JSON.stringify(body)}`);
    await load(2); // warm up: connections, inference threads, page cache
    const before = await queries(base);
    const r = await load(seconds);
    const after = await queries(base);
    const perQuery = (after.keys - before.keys) / Math.max(1, after.count - before.count);
    const bad = r.non2xx + r.errors + r.timeouts;
    const p99 = r.latency.p99;
    return [
      `compute on miss: single-key GET of keys missing from the run (${MISS_ROWS.toLocaleString('en-US')} rows after it), ${CONNECTIONS} connections`,
      `  prescore serve                ${Math.round(r.requests.average).toLocaleString('en-US').padStart(8)} req/s  p50 ${r.latency.p50.toFixed(2).padStart(6)} ms  p99 ${p99.toFixed(2).padStart(6)} ms${bad ? `  (${bad} failed)` : ''}`,
      `  (${perQuery.toFixed(1)} keys per source query and inference call on average)`,
      `  target p99 <= 20 ms: ${p99.toFixed(2)} ms ${p99 <= 20 && bad === 0 ? 'met' : 'MISSED'}`,
    ];
  } finally {
    await stopChild(child);
  }
}

async function queries(base: string): Promise<{ count: number; keys: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const pick = (what: string) =>
    Number(new RegExp(`^prescore_api_miss_query_keys_${what}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { count: pick('count'), keys: pick('sum') };
}
