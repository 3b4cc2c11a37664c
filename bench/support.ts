import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { packageRoot } from '../src/paths.js';

const CLI = path.join(packageRoot, 'bin', 'prescore.js');

/** The benchmark database: BENCH_DATABASE_URL, else `prescore_bench` on the local server. */
export async function benchDatabase(): Promise<string> {
  if (process.env.BENCH_DATABASE_URL) return process.env.BENCH_DATABASE_URL;
  const admin = process.env.PRESCORE_TEST_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  const exists = await c.query(`SELECT 1 FROM pg_database WHERE datname = 'prescore_bench'`);
  if (exists.rowCount === 0) await c.query('CREATE DATABASE prescore_bench');
  await c.end();
  return admin.replace(/\/[^/]*$/, '/prescore_bench');
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
