import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { benchDatabase, logLine, runCli, type CliRun, registerBenchModel, seedBenchFeatures, BENCH_SOURCE } from './support.js';

/**
 * `npm run bench:challengers`: the MLP as champion with the 100-tree ensemble as challenger, in
 * one run, against the MLP alone and the trees alone, on the same BENCH_ROWS (default
 * 1,000,000) rows x 32 float4 features. Prints, per run, the read, inference (per model, in its
 * threads) and write times and the wall time. Claim: the combined run costs at most one read,
 * one write and both models' inference, far below the two separate runs.
 */
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const FEATURES = 32;
const DATE = '2026-01-03';

async function seed(pool: pg.Pool): Promise<void> {
  await seedBenchFeatures(pool, DATE, ROWS);
}

function job(name: string, model: string, challengers?: string[]) {
  return {
    name,
    model,
    ...(challengers ? { challengers } : {}),
    source: BENCH_SOURCE,
    chunkRows: 50_000,
    keepRuns: 1,
  };
}

interface Timings {
  chunksMs: number;
  finalizeMs: number;
  chunkStagesMs: { read: number; inferWait: number; write: number; commit: number };
  inferMsByModel: Record<string, number>;
}

async function main(): Promise<void> {
  const url = await benchDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  await seed(pool);
  await pool.end();
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-bench-ch-'));
  const env = { DATABASE_URL: url, PRESCORE_JOBS_DIR: jobsDir, PRESCORE_LOG_LEVEL: 'info' };
  for (const m of ['mlp', 'trees']) await registerBenchModel(m, env);
  const jobs = {
    'bench-ch-mlp': job('bench-ch-mlp', 'mlp@bench'),
    'bench-ch-trees': job('bench-ch-trees', 'trees@bench'),
    'bench-ch-both': job('bench-ch-both', 'mlp@bench', ['trees@bench']),
  };
  for (const [name, spec] of Object.entries(jobs)) fs.writeFileSync(path.join(jobsDir, `${name}.json`), JSON.stringify(spec));
  const runs: Record<string, { run: CliRun; t: Timings }> = {};
  for (const name of Object.keys(jobs)) {
    const run = await runCli(['run', name, '--date', DATE, '--json'], env);
    if (run.code !== 0) throw new Error(`${name}: ${run.stderr}`);
    runs[name] = { run, t: logLine(run.stderr, 'run timings') as unknown as Timings };
  }
  const out = (s: string) => process.stdout.write(s + '\n');
  const s = (ms: number) => (ms / 1000).toFixed(2);
  const infer = (t: Timings, model: string) =>
    Object.entries(t.inferMsByModel).find(([k]) => k.startsWith(`${model} v`))?.[1] ?? 0;
  out(
    `\nchallengers in one pass: ${ROWS.toLocaleString()} rows x ${FEATURES} float4 features, chunkRows 50,000, ${os.availableParallelism()} cores`,
  );
  out("(stage times are summed over chunks; inference is each model's time in its inference threads)");
  out('| run | wall s | read s | infer MLP s | infer trees s | write s | commit s | finalize s | rows/s |');
  out('|---|---|---|---|---|---|---|---|---|');
  for (const [name, label] of [
    ['bench-ch-mlp', 'MLP alone'],
    ['bench-ch-trees', 'trees alone'],
    ['bench-ch-both', 'MLP + trees challenger'],
  ] as const) {
    const { run, t } = runs[name]!;
    const st = t.chunkStagesMs;
    out(
      `| ${label} | ${s(run.wallMs)} | ${s(st.read)} | ${name === 'bench-ch-trees' ? '-' : s(infer(t, 'mlp'))} | ${name === 'bench-ch-mlp' ? '-' : s(infer(t, 'trees'))} | ` +
        `${s(st.write)} | ${s(st.commit)} | ${s(t.finalizeMs)} | ${Math.round(ROWS / (run.wallMs / 1000)).toLocaleString()} |`,
    );
  }
  const mlp = runs['bench-ch-mlp']!;
  const trees = runs['bench-ch-trees']!;
  const both = runs['bench-ch-both']!;
  // The MLP run alone is one read, one write and the MLP's inference (overlapped); the claim
  // is that adding the trees costs at most their inference time on top of it.
  const budget = mlp.run.wallMs + infer(trees.t, 'trees');
  const separate = mlp.run.wallMs + trees.run.wallMs;
  out(
    `\ncombined run ${s(both.run.wallMs)} s vs MLP run + trees inference ${s(budget)} s: ${both.run.wallMs <= budget ? 'within' : 'OVER'} budget; ` +
      `vs two separate runs ${s(separate)} s: ${((both.run.wallMs / separate) * 100).toFixed(0)}% of their time`,
  );
  fs.rmSync(jobsDir, { recursive: true, force: true });
}

await main();
