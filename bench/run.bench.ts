import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { benchDatabase, logLine, runCli, type CliRun, registerBenchModel, seedBenchFeatures, BENCH_SOURCE } from './support.js';

/**
 * `npm run bench`: 2,000,000 rows x 32 float4 features through `prescore run`, with the MLP
 * and the 100-tree ensemble test models; prints rows/s end to end, time per stage and peak
 * RSS, and the same run on 200,000 rows to show memory does not grow with the table.
 * Drift profiling's cost: the same jobs with `monitor.profile: false`, run BENCH_PAIRS times
 * each (default 3), alternating, compared by median wall time and CPU time.
 * Targets (2-core machine): >= 80% of the design's bare-pipeline figures, 560k (MLP) and
 * 310k (trees) rows/s; peak RSS at 2M within 1.5x of 200k.
 */
const BIG = Number(process.env.BENCH_ROWS ?? 2_000_000);
const SMALL = Math.round(BIG / 10);
const FEATURES = 32;
const BIG_DATE = '2026-01-02';
const PAIRS = Number(process.env.BENCH_PAIRS ?? 3);
const SMALL_DATE = '2026-01-01';

async function seed(pool: pg.Pool): Promise<void> {
  await seedBenchFeatures(pool, BIG_DATE, BIG);
  await seedBenchFeatures(pool, SMALL_DATE, SMALL);
}

function job(name: string, model: string, profile = true) {
  return {
    name,
    monitor: { profile },
    model: `${model}@bench`,
    source: BENCH_SOURCE,
    chunkRows: 50_000,
    keepRuns: 1,
  };
}

interface Row {
  what: string;
  rows: number;
  run: CliRun;
}

async function main(): Promise<void> {
  const url = await benchDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  await seed(pool);
  await pool.end();
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bench-'));
  const env = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'info' };
  for (const m of ['mlp', 'trees']) {
    await registerBenchModel(m, env);
    fs.writeFileSync(path.join(jobsDir, `bench-${m}.json`), JSON.stringify(job(`bench-${m}`, m)));
    // The same job without drift profiling: what profiling costs.
    fs.writeFileSync(path.join(jobsDir, `bench-${m}-noprof.json`), JSON.stringify(job(`bench-${m}-noprof`, m, false)));
  }
  const results: Row[] = [];
  for (const [what, model, date, rows] of [
    ['MLP 32-64-64-1', 'mlp', BIG_DATE, BIG],
    ['trees 100 x depth 5', 'trees', BIG_DATE, BIG],
    ['MLP, 1/10 of the rows', 'mlp', SMALL_DATE, SMALL],
    ['MLP, no drift profiling', 'mlp-noprof', BIG_DATE, BIG],
    ['trees, no drift profiling', 'trees-noprof', BIG_DATE, BIG],
  ] as const) {
    const run = await runCli(['run', `bench-${model}`, '--date', date, '--json'], env);
    if (run.code !== 0) throw new Error(`${what}: ${run.stderr}`);
    results.push({ what, rows, run });
  }

  const target: Record<string, number> = { mlp: 560_000 * 0.8, trees: 310_000 * 0.8 };
  const out = (s: string) => process.stdout.write(s + '\n');
  out(`\nprescore run, ${FEATURES} float4 features, chunkRows 50,000, ${os.availableParallelism()} cores\n`);
  out(
    '| run | rows | wall s | rows/s (end to end) | target | plan ms | chunks ms | finalize ms | read / infer wait / write / commit ms (summed over chunks) | peak RSS MiB |',
  );
  out('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const t = logLine(r.run.stderr, 'run timings') as {
      planMs: number;
      chunksMs: number;
      finalizeMs: number;
      chunkStagesMs: Record<string, number>;
    };
    const rate = Math.round(r.rows / (r.run.wallMs / 1000));
    const key = r.what.startsWith('MLP') ? 'mlp' : 'trees';
    const s = t.chunkStagesMs;
    out(
      `| ${r.what} | ${r.rows.toLocaleString()} | ${(r.run.wallMs / 1000).toFixed(1)} | ${rate.toLocaleString()} | ` +
        `${r.rows === BIG ? `${Math.round(target[key]!).toLocaleString()} ${rate >= target[key]! ? 'met' : 'MISSED'}` : '-'} | ` +
        `${t.planMs} | ${t.chunksMs} | ${t.finalizeMs} | ${s.read} / ${s.inferWait} / ${s.write} / ${s.commit} | ${r.run.peakRssMiB.toFixed(0)} |`,
    );
  }
  const big = results[0]!.run.peakRssMiB;
  const small = results[2]!.run.peakRssMiB;
  out(
    `\nInvariant 6 (bounded memory): peak RSS ${big.toFixed(0)} MiB on ${BIG.toLocaleString()} rows vs ${small.toFixed(0)} MiB on ${SMALL.toLocaleString()} rows: ` +
      `${(big / small).toFixed(2)}x (must be <= 1.5x) ${big / small <= 1.5 ? 'OK' : 'FAILED'}`,
  );
  // More runs of each, alternating with and without profiling, so a slow moment hits both alike.
  const runs: Record<string, CliRun[]> = {
    mlp: [results[0]!.run],
    'mlp-noprof': [results[3]!.run],
    trees: [results[1]!.run],
    'trees-noprof': [results[4]!.run],
  };
  for (let i = 1; i < PAIRS; i++) {
    for (const model of ['mlp', 'mlp-noprof', 'trees', 'trees-noprof']) {
      const run = await runCli(['run', `bench-${model}`, '--date', BIG_DATE, '--json'], env);
      if (run.code !== 0) throw new Error(`${model}: ${run.stderr}`);
      runs[model]!.push(run);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const pct = (a: number, b: number) => {
    const p = (a / b - 1) * 100;
    return `${p >= 0 ? '+' : ''}${p.toFixed(1)}%`;
  };
  out(`\nDrift profiling (every feature and output, in the scoring pass), median of ${runs.mlp!.length} runs each:`);
  out('| model | wall s with / without | wall time | CPU s with / without | CPU time |');
  out('|---|---|---|---|---|');
  for (const m of ['mlp', 'trees']) {
    const [w, w0] = [median(runs[m]!.map((r) => r.wallMs)), median(runs[`${m}-noprof`]!.map((r) => r.wallMs))];
    const [c, c0] = [median(runs[m]!.map((r) => r.cpuMs)), median(runs[`${m}-noprof`]!.map((r) => r.cpuMs))];
    const within = w / w0 - 1 <= 0.05 ? 'within' : 'OVER';
    out(
      `| ${m === 'mlp' ? 'MLP' : 'trees'} | ${(w / 1000).toFixed(2)} / ${(w0 / 1000).toFixed(2)} | ${pct(w, w0)} (${within} the 5% budget) | ` +
        `${(c / 1000).toFixed(2)} / ${(c0 / 1000).toFixed(2)} | ${pct(c, c0)} |`,
    );
  }
  fs.rmSync(jobsDir, { recursive: true, force: true });
}

await main();
