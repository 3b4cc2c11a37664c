import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { packageRoot } from '../src/paths.js';

/** The server tests run against (the machine's PostgreSQL); each test file gets its own database. */
export const ADMIN_URL = process.env.PRESCORE_TEST_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const MODELS_DIR = path.join(packageRoot, 'test', 'models');
const CLI = path.join(packageRoot, 'bin', 'prescore.js');

export interface TestDb {
  name: string;
  url: string;
  pool: pg.Pool;
  jobsDir: string;
  drop(): Promise<void>;
}

/** A fresh database and jobs directory for one test file; dropped afterwards. */
export async function createTestDb(label: string): Promise<TestDb> {
  const name = `prescore_t_${label.replace(/\W/g, '_')}_${crypto.randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => undefined); // a server restart in a fault test must not crash the test process
  const jobsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-jobs-'));
  return {
    name,
    url,
    pool,
    jobsDir,
    drop: async () => {
      await pool.end();
      const a = new pg.Client({ connectionString: ADMIN_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
      fs.rmSync(jobsDir, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last line on stderr. */
  lastError: string;
}

export function cli(db: TestDb | null, args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const child = startCli(db, args, env);
  return child.done;
}

export function startCli(
  db: TestDb | null,
  args: string[],
  env: Record<string, string | undefined> = {},
): {
  pid: number;
  kill(signal: NodeJS.Signals): void;
  output(): { stdout: string; stderr: string };
  exitCode(): number | null;
  done: Promise<CliResult>;
} {
  const fullEnv: Record<string, string | undefined> = {
    ...process.env,
    PRESCORE_LOG_LEVEL: 'warn',
    ...(db ? { DATABASE_URL: db.url, PRESCORE_JOBS_DIR: db.jobsDir } : {}),
    ...env,
  };
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === undefined) delete fullEnv[k];
  const child = spawn(process.execPath, [CLI, ...args], { env: fullEnv as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      const lines = stderr.trim().split('\n');
      resolve({ code, signal, stdout, stderr, lastError: lines[lines.length - 1] ?? '' });
    });
  });
  return {
    pid: child.pid!,
    kill: (s) => child.kill(s),
    output: () => ({ stdout, stderr }),
    exitCode: () => child.exitCode ?? (child.signalCode ? -1 : null),
    done,
  };
}

/** Registers test/models/<file>.onnx as `name`, pointing `alias` at it; fails the test otherwise. */
export async function registerModel(db: TestDb, name: string, file: string, alias = 'champion'): Promise<CliResult> {
  const r = await cli(db, ['models', 'register', name, path.join(MODELS_DIR, `${file}.onnx`), '--alias', alias]);
  if (r.code !== 0) throw new Error(`registering ${file}.onnx failed: ${r.stderr}`);
  return r;
}

export function writeJob(db: TestDb, spec: Record<string, unknown>): void {
  fs.writeFileSync(path.join(db.jobsDir, `${String(spec.name)}.json`), JSON.stringify(spec, null, 2));
}

/** A job spec over `table` with sensible defaults; override any field. */
export function jobSpec(name: string, model: string, table: string, features: string[], extra: Record<string, unknown> = {}) {
  return {
    name,
    model,
    source: { table, key: 'id', partition: 'as_of', features },
    chunkRows: 1000,
    ...extra,
  };
}

export function featureNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `f${i}`);
}

/**
 * Creates `table (id <keyType>, as_of date, f0..fn <type>)` and fills `rows` deterministic rows
 * for `date` (values in about [-2, 2]). Keys are 1..rows, or offset/transformed by keyExpr.
 */
export async function seedFeatures(
  pool: pg.Pool,
  table: string,
  options: { rows: number; features: number; date: string; type?: string; keyType?: string; keyExpr?: string; salt?: number },
): Promise<void> {
  const type = options.type ?? 'real';
  const cols = featureNames(options.features);
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${table} (id ${options.keyType ?? 'bigint'} NOT NULL, as_of date NOT NULL,
       ${cols.map((c) => `${c} ${type}`).join(', ')}, PRIMARY KEY (id, as_of))`,
  );
  const salt = options.salt ?? 0;
  const values = cols.map((_, j) =>
    type === 'bigint' || type === 'integer' || type === 'smallint'
      ? `(((g * ${j + 3} + ${salt}) % 17) - 8)::${type}`
      : `(2 * sin(g * 0.37 + ${j} * 1.3 + ${salt}))::${type}`,
  );
  await pool.query(
    `INSERT INTO ${table} SELECT ${options.keyExpr ?? 'g'}, $1::date, ${values.join(', ')} FROM generate_series(1, $2::int) AS g`,
    [options.date, options.rows],
  );
}

/** Rows of the source table for a date: key text + features as float8 (the values the model saw). */
export async function sourceRows(pool: pg.Pool, table: string, features: number, date: string): Promise<Map<string, number[]>> {
  const cols = featureNames(features);
  const { rows } = await pool.query<Record<string, string | number>>(
    `SELECT id::text AS id, ${cols.map((c) => `${c}::float8 AS ${c}`).join(', ')} FROM ${table} WHERE as_of = $1::date`,
    [date],
  );
  return new Map(rows.map((r) => [String(r.id), cols.map((c) => Number(r[c]))]));
}

export interface StoredPrediction {
  key: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** The predictions a reader sees for a job's date (through the serving pointer). */
export async function servedPredictions(
  pool: pg.Pool,
  job: string,
  date: string,
): Promise<{ runId: string | null; rows: Map<string, StoredPrediction> }> {
  const s = await pool.query<{ run_id: string }>('SELECT run_id::text FROM prescore.serving WHERE job = $1 AND date = $2::date', [
    job,
    date,
  ]);
  const runId = s.rows[0]?.run_id ?? null;
  if (!runId) return { runId, rows: new Map() };
  const { rows } = await pool.query<StoredPrediction>(
    'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint',
    [runId],
  );
  return { runId, rows: new Map(rows.map((r) => [r.key, r])) };
}

export function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(`${what}: got ${actual}, expected ${expected} (tolerance ${tolerance})`);
  }
}

/** Polls `check` until it returns a value (not undefined/false) or the time is up. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** JSON log lines a prescore process wrote to stderr. */
export function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function todayUtc(): string {
  return new Date().toISOString().slice(0, 10);
}

/**
 * A transaction holding `lock` (e.g. `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`) until release():
 * what a run under test waits on, without an error. release() may be called more than once.
 */
export async function holdLock(pool: pg.Pool, lock: string): Promise<{ release(): Promise<void> }> {
  const client = await pool.connect();
  await client.query('BEGIN');
  await client.query(lock);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await client.query('COMMIT');
      client.release();
    },
  };
}
