import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { packageRoot } from '../src/paths.js';

const CLI = path.join(packageRoot, 'bin', 'prescore.js');

/**
 * The benchmark database: BENCH_DATABASE_URL, else `name` (default `prescore_bench`) on the
 * local server, created when missing.
 */
export async function benchDatabase(name = 'prescore_bench'): Promise<string> {
  if (process.env.BENCH_DATABASE_URL) return process.env.BENCH_DATABASE_URL;
  const admin = process.env.PRESCORE_TEST_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  const exists = await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name]);
  if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await c.end();
  return admin.replace(/\/[^/]*$/, `/${name}`);
}

/** A benchmark database `name` made afresh (dropped first): no runs of an earlier bench to start from. */
export async function freshBenchDatabase(name: string): Promise<string> {
  if (process.env.BENCH_DATABASE_URL) return process.env.BENCH_DATABASE_URL;
  const admin = process.env.PRESCORE_TEST_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await c.end();
  }
  return benchDatabase(name);
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  /** Peak resident set (VmHWM) of the prescore process, MiB. */
  peakRssMiB: number;
  /** CPU time (user + system, every thread) of the prescore process, ms, as last sampled. */
  cpuMs: number;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** Runs the prescore CLI, sampling its peak RSS from /proc while it runs. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let peak = 0;
  let cpu = 0;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const sample = () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
      // Fields 14 and 15 of /proc/PID/stat, after the parenthesised command name.
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpu = (Number(f[11]) + Number(f[12])) * TICK_MS;
    } catch {
      /* exited */
    }
  };
  const timer = setInterval(sample, 20);
  return new Promise((resolve) => {
    child.on('exit', () => sample());
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr, wallMs: performance.now() - started, peakRssMiB: peak, cpuMs: cpu });
    });
  });
}

export function logLine(stderr: string, msg: string): Record<string, unknown> | undefined {
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.msg === msg) return o;
  }
  return undefined;
}

/** Starts `node <argv>` and resolves with the URL once it prints "listening on <url>". */
export function startListening(argv: string[], env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1]!, child });
    });
    child.on('exit', (code) => reject(new Error(`${argv.join(' ')} exited with ${code}`)));
  });
}

/** SIGTERM, then waits for the exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Registers test/models/<model>.onnx (`npm run bench` writes them) as `<model>@bench`; throws with the CLI's stderr. */
export async function registerBenchModel(model: string, env: Record<string, string>): Promise<void> {
  const r = await runCli(
    ['models', 'register', model, path.join(packageRoot, 'test', 'models', `${model}.onnx`), '--alias', 'bench'],
    env,
  );
  if (r.code !== 0) throw new Error(r.stderr);
}

/**
 * Registers `bytes` as model `job` (alias `bench`) and writes the job file `job` that scores
 * it: `{name, model: "<job>@bench", ...spec}`, then runs it for `date`. What the API benches
 * set up before they measure.
 */
export async function publishBenchJob(
  job: string,
  bytes: Uint8Array,
  spec: Record<string, unknown>,
  date: string,
  env: Record<string, string> & { PRESCORE_JOBS_DIR: string },
): Promise<CliRun> {
  const modelFile = path.join(env.PRESCORE_JOBS_DIR, `${job}.onnx`);
  fs.writeFileSync(modelFile, bytes);
  const reg = await runCli(['models', 'register', job, modelFile, '--alias', 'bench'], env);
  if (reg.code !== 0) throw new Error(reg.stderr);
  fs.writeFileSync(
    path.join(env.PRESCORE_JOBS_DIR, `${job}.json`),
    JSON.stringify({ name: job, model: `${job}@bench`, ...spec }),
  );
  const run = await runCli(['run', job, '--date', date], env);
  if (run.code !== 0) throw new Error(run.stderr);
  return run;
}

/** The 32 float4 feature columns of `bench_features`, the table run.bench and challengers.bench score. */
export const BENCH_COLUMNS = Array.from({ length: 32 }, (_, i) => `f${i}`);

/** A job's source over `bench_features`. */
export const BENCH_SOURCE = { table: 'bench_features', key: 'id', partition: 'as_of', features: BENCH_COLUMNS };

/** Fills `bench_features` with `rows` rows for `date`, unless it already has exactly that many. */
export async function seedBenchFeatures(pool: pg.Pool, date: string, rows: number): Promise<void> {
  await pool.query(
    `CREATE UNLOGGED TABLE IF NOT EXISTS bench_features (id bigint NOT NULL, as_of date NOT NULL,
       ${BENCH_COLUMNS.map((c) => `${c} real`).join(', ')}, PRIMARY KEY (as_of, id))`,
  );
  const have = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM bench_features WHERE as_of = $1', [date]);
  if (have.rows[0]!.n === rows) return;
  await pool.query('DELETE FROM bench_features WHERE as_of = $1', [date]);
  const t = performance.now();
  await pool.query(
    `INSERT INTO bench_features SELECT g, $1::date, ${BENCH_COLUMNS.map((_, j) => `(sin(g * 0.001 + ${j}) * 2)::real`).join(', ')}
       FROM generate_series(1, $2::int) g`,
    [date, rows],
  );
  await pool.query('VACUUM ANALYZE bench_features');
  process.stderr.write(`seeded ${rows.toLocaleString()} rows for ${date} in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
}
