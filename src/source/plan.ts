import { withReadOnly, type Pool } from '../db/pool.js';
import { quoteIdent } from '../db/ident.js';
import type { ResolvedJob } from '../definitions/check.js';
import { dateFilter } from './sql.js';
import { fromClause, sourceStatement } from './statement.js';

export interface ChunkPlan {
  chunkNo: number;
  lo: string | null;
  hi: string | null;
  rowsPlanned: number;
}

/**
 * Splits one date of the source into key ranges of about chunkRows rows each, from the
 * key quantiles (percentile_disc over the key: one sort, any ordered key type). Bounds
 * travel as text and are cast back to the key's type when read.
 */
export function planChunks(pool: Pool, job: ResolvedJob, date: string): Promise<{ rows: number; chunks: ChunkPlan[] }> {
  return withReadOnly(pool, (client) => planWith(client, job, date));
}

/** Rows of one date of the source (read-only). */
export function countSourceRows(pool: Pool, job: ResolvedJob, date: string): Promise<number> {
  return withReadOnly(pool, (client) => countWith(client, job, date));
}

async function countWith(pool: Pick<Pool, 'query'>, job: ResolvedJob, date: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    sourceStatement(`SELECT count(*) AS n FROM ${fromClause(job)} WHERE ${dateFilter(job, date)}`),
  );
  return Number(rows[0]!.n);
}

async function planWith(
  pool: Pick<Pool, 'query'>,
  job: ResolvedJob,
  date: string,
): Promise<{ rows: number; chunks: ChunkPlan[] }> {
  const where = dateFilter(job, date);
  const rows = await countWith(pool, job, date);
  const n = Math.ceil(rows / job.spec.chunkRows);
  if (n <= 1) return { rows, chunks: [{ chunkNo: 0, lo: null, hi: null, rowsPlanned: rows }] };
  const fractions = Array.from({ length: n - 1 }, (_, i) => (i + 1) / n);
  const key = quoteIdent(job.key.name);
  const q = await pool.query<{ b: string[] }>(
    sourceStatement(
      `SELECT percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY ${key})::text[] AS b
         FROM ${fromClause(job)} WHERE ${where} AND ${key} IS NOT NULL`,
      [fractions],
    ),
  );
  const bounds = [...new Set((q.rows[0]?.b ?? []).filter((b): b is string => b !== null))];
  const edges: (string | null)[] = [null, ...bounds, null];
  const chunks: ChunkPlan[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    chunks.push({ chunkNo: i, lo: edges[i]!, hi: edges[i + 1]!, rowsPlanned: Math.round(rows / (edges.length - 1)) });
  }
  return { rows, chunks };
}
