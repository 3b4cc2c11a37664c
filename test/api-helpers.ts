import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { buildApi, type Api, type ApiOptions } from '../src/api/server.js';
import { silentLogger } from '../src/log.js';
import { cli, featureNames, jobSpec, seedFeatures, writeJob, type TestDb } from './helpers.js';

/** The application_name of the pools the API tests create: leaks show up in pg_stat_activity. */
export const API_POOL_NAME = 'prescore-api-test';

/** `prescore run <job> --date <date>`; returns the published run's id. */
export async function runJob(db: TestDb, job: string, date: string): Promise<string> {
  const r = await cli(db, ['run', job, '--date', date, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { id: string; status: string };
  assert.equal(info.status, 'published');
  return info.id;
}

export interface RunningApi {
  api: Api;
  pool: pg.Pool;
  /** http://127.0.0.1:<port> */
  base: string;
  /** Closes the API and its pool, then checks that no connection of theirs is left. */
  close(): Promise<void>;
}

/**
 * The API in this process, on a pool of its own, listening on a free loopback port.
 * `pool.url` (default the test database's) and `pool.timeoutMs` (checkout timeout) as serve sets them.
 */
export async function startApi(
  db: TestDb,
  options: ApiOptions = {},
  poolOptions: { url?: string; timeoutMs?: number } = {},
): Promise<RunningApi> {
  const pool = new pg.Pool({
    connectionString: poolOptions.url ?? db.url,
    max: 8,
    application_name: API_POOL_NAME,
    connectionTimeoutMillis: poolOptions.timeoutMs,
  });
  // As createPool does: an idle client losing its server (tests terminate backends) is no crash.
  pool.on('error', () => undefined);
  const api = await buildApi(pool, silentLogger, options);
  const base = await api.app.listen({ port: 0, host: '127.0.0.1' });
  return {
    api,
    pool,
    base,
    close: async () => {
      await api.close();
      await api.close(); // idempotent
      await pool.end();
      assert.equal(api.listener.connected, false, 'the LISTEN connection must be closed');
      await assertNoConnections(db, [API_POOL_NAME, `${API_POOL_NAME}-listen`]);
    },
  };
}

/** No backend of `db` with these application names remains (backends exit asynchronously). */
export async function assertNoConnections(db: TestDb, names: string[]): Promise<void> {
  let left: string[] = [];
  for (let i = 0; i < 40; i++) {
    const { rows } = await db.pool.query<{ application_name: string }>(
      'SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND application_name = ANY ($1)',
      [names],
    );
    left = rows.map((r) => r.application_name);
    if (left.length === 0) return;
    await sleep(50);
  }
  assert.fail(`connections left open: ${left.join(', ')}`);
}

export interface Response<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** A request whose body is parsed as JSON when it is JSON (every API answer but /metrics). */
export async function request<T = Record<string, unknown>>(
  base: string,
  path: string,
  init: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string>; token?: string } = {},
): Promise<Response<T>> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.body !== undefined) headers['content-type'] ??= 'application/json';
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  const res = await fetch(base + path, {
    method: init.method ?? (init.body !== undefined || init.raw !== undefined ? 'POST' : 'GET'),
    headers,
    body: init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body)),
    // A server that never answers fails the test instead of hanging the suite.
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').startsWith('application/json');
  return { status: res.status, headers: res.headers, text, body: (json ? JSON.parse(text) : undefined) as T };
}

export interface StoredRow {
  key: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** What a run stored, read straight from its partition: the oracle for the API's answers. */
export async function storedRows(db: TestDb, runId: string): Promise<Map<string, StoredRow>> {
  const { rows } = await db.pool.query<StoredRow>(
    'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint',
    [runId],
  );
  return new Map(rows.map((r) => [r.key, r]));
}

export interface Item {
  job: string;
  key: string;
  asOf: string;
  runId: string;
  model: { name: string; version: number };
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** Requests a slow client starts and never finishes: a body that never ends, headers that never end. */
export const SLOW_REQUESTS = [
  {
    what: 'a body that never ends',
    partial:
      'POST /v1/predictions/errs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"keys":',
  },
  { what: 'headers that never end', partial: 'GET /v1/predictions/errs/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ' },
] as const;

/** Sends `partial` and never more: the server (request timeout 500 ms) answers 408 or closes within 4 s. */
export async function assertCutOff(base: string, partial: string): Promise<void> {
  const started = Date.now();
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(new URL(base).port), '127.0.0.1', () => socket.write(partial));
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the server kept the slow connection open for 8 s'));
    }, 8000).unref();
  });
  assert.ok(Date.now() - started < 4000, `cut off after ${Date.now() - started} ms`);
  assert.ok(answer === '' || /^HTTP\/1\.1 408/.test(answer), answer);
}

/** The dates and the largest bigint key of the read-API fixture (seedTwoDates). */
export const FIXTURE_D1 = '2026-11-20';
export const FIXTURE_D2 = '2026-11-21';
export const BIG_KEY = '9223372036854775807';

/**
 * The read-API fixture: table `feats` with 300 rows on FIXTURE_D1 and 200 on FIXTURE_D2, key 1
 * replaced by the largest bigint and key 5's f2 NULL on FIXTURE_D2; job `job` scores it with
 * `lin@champion` (registered by the caller) and both dates are run and published.
 */
export async function seedTwoDates(
  db: TestDb,
  job: string,
  extra: Record<string, unknown> = {},
): Promise<{ d1: string; d2: string }> {
  const keyExpr = `CASE WHEN g = 1 THEN ${BIG_KEY} ELSE g END`;
  await seedFeatures(db.pool, 'feats', { rows: 300, features: 4, date: FIXTURE_D1, keyExpr });
  await seedFeatures(db.pool, 'feats', { rows: 200, features: 4, date: FIXTURE_D2, keyExpr, salt: 1 });
  await db.pool.query(`UPDATE feats SET f2 = NULL WHERE id = 5 AND as_of = $1`, [FIXTURE_D2]);
  writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4), extra));
  const d1 = await runJob(db, job, FIXTURE_D1);
  const d2 = await runJob(db, job, FIXTURE_D2);
  return { d1, d2 };
}
