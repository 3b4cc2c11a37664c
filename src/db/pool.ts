import pg from 'pg';
import type { Logger } from '../log.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** A pool or a client (in a transaction): what the statement functions of src/db/sql take. */
export type Queryable = Pick<pg.ClientBase, 'query'>;

// int8 and numeric come back as strings (exact); we convert only where a number is safe.
pg.types.setTypeParser(pg.types.builtins.DATE, (v) => v);

/**
 * `timeoutMs`: how long to wait for a connection (a new one, or a free one of a full pool);
 * the read API sets it so a hanging server gives a quick 503 rather than a pile of requests.
 */
export function createPool(
  connectionString: string,
  log: Logger,
  max = 10,
  timeoutMs?: number,
  extra: { applicationName?: string; statementTimeoutMs?: number } = {},
): Pool {
  // TCP keepalive: a server that vanished without closing the socket (a partition, a dead
  // host) is noticed, so a chunk fails and retries instead of waiting forever.
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: extra.applicationName ?? 'prescore',
    statement_timeout: extra.statementTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: timeoutMs,
  });
  // A client losing its server (a restart, a failover) must not crash the process: idle
  // clients report through the pool, checked-out ones through their own listener; the query
  // in flight fails and the caller retries or fails the run (pg-boss does the same).
  pool.on('error', (err) => log.warn({ err: err.message }, 'postgres connection error'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err: err.message }, 'postgres connection error (in use)'));
  });
  return pool;
}

export async function withClient<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/**
 * Runs `fn` in a READ ONLY transaction (rolled back at the end): what reads the feature source
 * (a table, or a job's own SQL query) can never modify data.
 */
export async function withReadOnly<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN TRANSACTION READ ONLY');
    try {
      return await fn(client);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  });
}

export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN');
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}
