import { escapeLiteral } from 'pg';
import { quoteIdent } from '../db/ident.js';
import type { ResolvedJob } from '../definitions/check.js';
import { fromClause } from './statement.js';

/** The WHERE clause selecting one date of the source (a literal: COPY takes no parameters). */
export function dateFilter(job: ResolvedJob, date: string): string {
  const col = quoteIdent(job.partition.name);
  const d = `${escapeLiteral(date)}::date`;
  switch (job.partition.kind) {
    case 'date':
      return `${col} = ${d}`;
    case 'timestamp':
      return `${col} >= ${d} AND ${col} < ${d} + 1`;
    case 'timestamptz': {
      // The day in the job's schedule time zone (UTC without a schedule).
      const tz = escapeLiteral(job.spec.schedule?.timezone ?? 'UTC');
      return `${col} >= (${d}::timestamp AT TIME ZONE ${tz}) AND ${col} < ((${d} + 1)::timestamp AT TIME ZONE ${tz})`;
    }
  }
}

/** Key range [lo, hi) of a chunk; NULL keys belong to the first chunk so every row is read once. */
export function rangeFilter(job: ResolvedJob, lo: string | null, hi: string | null): string {
  const key = quoteIdent(job.key.name);
  const cast = (v: string) => `${escapeLiteral(v)}::${job.key.pgType}`;
  const parts: string[] = [];
  if (lo !== null) parts.push(`${key} >= ${cast(lo)}`);
  if (hi !== null) parts.push(lo === null ? `(${key} < ${cast(hi)} OR ${key} IS NULL)` : `${key} < ${cast(hi)}`);
  return parts.length ? parts.join(' AND ') : 'true';
}

/** What a chunk reads of each row: key as text, then each feature in its wire type. */
function selectList(job: ResolvedJob): string {
  return [`${quoteIdent(job.key.name)}::text`, ...job.features.map((f) => `${quoteIdent(f.name)}::${f.wire}`)].join(', ');
}

/** The SELECT a chunk reads (`filter`: an incremental run's changed keys, runs/incremental.ts). */
export function chunkSelectSql(job: ResolvedJob, date: string, lo: string | null, hi: string | null, filter?: string): string {
  const only = filter === undefined ? '' : ` AND ${filter}`;
  return `SELECT ${selectList(job)} FROM ${fromClause(job)} WHERE ${dateFilter(job, date)} AND ${rangeFilter(job, lo, hi)}${only}`;
}

/**
 * The SELECT of a few keys of one date, as a chunk reads them (the read API's compute on
 * miss). The keys are escaped literals, cast to the key's type: COPY takes no parameters.
 */
export function keysSelectSql(job: ResolvedJob, date: string, keys: readonly string[]): string {
  const list = keys.map((k) => escapeLiteral(k)).join(', ');
  const filter = `${quoteIdent(job.key.name)} = ANY (ARRAY[${list}]::${job.key.pgType}[])`;
  return `SELECT ${selectList(job)} FROM ${fromClause(job)} WHERE ${dateFilter(job, date)} AND ${filter}`;
}

/** The binary COPY of a chunk's SELECT (COPY takes the simple protocol: check the SELECT first). */
export function chunkCopySql(select: string): string {
  return `COPY (${select}\n) TO STDOUT (FORMAT binary)`;
}
