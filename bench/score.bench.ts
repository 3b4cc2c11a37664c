import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon, { type Options } from 'autocannon';
import { linearModel, mlpModel, type TestModel } from '../test/fixtures/models.js';
import { packageRoot } from '../src/paths.js';
import { benchDatabase, publishBenchJob, runCli, startListening, stopChild } from './support.js';

/**
 * `npm run bench:score`: POST /v1/score/:job at 50 connections, one row per request, with
 * micro-batching (the default 1 ms window) and without (window 0: one inference call per
 * request), on the same `prescore serve`. Prints rows/s, p50 and p99, and inference calls per
 * row from /metrics. Target (printed, not asserted): batched >= 10x unbatched rows/s.
 * BENCH_SCORE_MODEL=mlp scores with the 32-64-64-1 MLP instead of the 4-feature linear model.
 */
const SECONDS = Number(process.env.BENCH_SCORE_SECONDS ?? 10);
const CONNECTIONS = 50;
const JOB = 'bench-score';
const DATE = '2026-01-01';

function pickModel(): TestModel {
  return process.env.BENCH_SCORE_MODEL === 'mlp' ? mlpModel() : linearModel();
}

async function prepare(url: string, model: TestModel): Promise<string[]> {
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bench-score-'));
  const env = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'warn' };
  const features = Array.from({ length: model.features }, (_, i) => `f${i}`);
  try {
    const migrated = await runCli(['migrate'], env);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const table = `bench_score_${model.features}`;
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await pool.query(`DROP TABLE IF EXISTS ${table}`);
      await pool.query(
        `CREATE TABLE ${table} (id bigint NOT NULL, as_of date NOT NULL, ${features.map((f) => `${f} real`).join(', ')},
           PRIMARY KEY (as_of, id))`,
      );
      await pool.query(
        `INSERT INTO ${table} SELECT g, $1::date, ${features.map((_, i) => `sin(g * ${i + 1})`).join(', ')}
           FROM generate_series(1, 1000) g`,
        [DATE],
      );
    } finally {
      await pool.end();
    }
    await publishBenchJob(
      JOB,
      model.bytes,
      { source: { table, key: 'id', partition: 'as_of', features }, chunkRows: 1000, keepRuns: 1 },
      DATE,
      env,
    );
    return features;
  } finally {
    fs.rmSync(jobsDir, { recursive: true, force: true });
  }
}

async function calls(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^prescore_score_batches_total\\{prescore_job="${JOB}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

interface Figures {
  rowsPerSecond: number;
  p50: number;
  p99: number;
  rowsPerCall: number;
  bad: number;
}

async function measure(dbUrl: string, features: string[], windowMs: number): Promise<Figures> {
  const { url, child } = await startListening(
    // --cache-mb 0: the bench database holds other benches' big runs, which the server would
    // load into memory beside the scoring it measures (scoring never reads them).
    [
      path.join(packageRoot, 'bin', 'prescore.js'),
      'serve',
      '--port',
      '0',
      '--no-auth',
      '--cache-mb',
      '0',
      '--score-batch-ms',
      String(windowMs),
    ],
    {
      DATABASE_URL: dbUrl,
      PRESCORE_LOG_LEVEL: 'warn',
    },
  );
  try {
    const body = (n: number) =>
      JSON.stringify({ rows: [{ key: String(n), features: Object.fromEntries(features.map((f, i) => [f, Math.sin(n + i)])) }] });
    const opts: Options = {
      url,
      connections: CONNECTIONS,
      requests: [
        {
          method: 'POST',
          setupRequest: (req) => ({
            ...req,
            path: `/v1/score/${JOB}`,
            headers: { 'content-type': 'application/json' },
            body: body(Math.floor(Math.random() * 1e6)),
          }),
        },
      ],
    };
    await autocannon({ ...opts, duration: 2 }); // warm-up: threads, sessions, JIT
    const before = await calls(url);
    const r = await autocannon({ ...opts, duration: SECONDS });
    const made = (await calls(url)) - before;
    return {
      rowsPerSecond: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      rowsPerCall: made > 0 ? r.requests.total / made : 0,
      bad: r.non2xx + r.errors + r.timeouts,
    };
  } finally {
    await stopChild(child);
  }
}

async function main(): Promise<void> {
  const url = await benchDatabase();
  const model = pickModel();
  const features = await prepare(url, model);
  const batched = await measure(url, features, 1);
  const single = await measure(url, features, 0);
  const line = (name: string, f: Figures) =>
    `${name.padEnd(34)} ${Math.round(f.rowsPerSecond).toLocaleString('en-US').padStart(9)} rows/s   p50 ${f.p50} ms   p99 ${f.p99} ms   ${f.rowsPerCall.toFixed(1)} rows per inference call${f.bad ? `   ${f.bad} failed` : ''}`;
  process.stdout.write(
    [
      `POST /v1/score, ${CONNECTIONS} connections, one row each, ${SECONDS} s, model ${model.name} (${model.features} features), ${os.availableParallelism()} cores`,
      line('micro-batched (1 ms window)', batched),
      line('one inference call per request', single),
      `speed-up: ${(batched.rowsPerSecond / single.rowsPerSecond).toFixed(1)}x (target >= 10x)`,
    ].join('\n') + '\n',
  );
}

await main();
