import { quoteQualified, type QualifiedName } from '../db/ident.js';

/**
 * The source as a FROM item. A job's query is embedded as text, so every statement holding it
 * goes through `sourceStatement` (the extended protocol: PostgreSQL refuses more than one
 * statement there), and the chunk reader checks its COPY's SELECT the same way before it runs
 * it. The newlines keep a trailing `--` comment from swallowing the rest.
 */
export function fromClause(job: { query: string | null; table: QualifiedName | null }): string {
  return job.query !== null ? `(\n${job.query}\n) AS prescore_source` : quoteQualified(job.table!);
}

/**
 * A statement that embeds the job's source query, sent with the extended protocol: one
 * statement only, so `...; COMMIT; CREATE ...` cannot end the read-only transaction.
 */
export function sourceStatement(
  text: string,
  values: unknown[] = [],
): { text: string; values: unknown[]; queryMode: 'extended' } {
  return { text, values, queryMode: 'extended' };
}

/**
 * PostgreSQL's complaint about a query a job embeds (`field`: the job field that holds it), said
 * as the fix when it is several statements.
 */
export function sourceQueryProblem(err: unknown, field = 'source.query'): string {
  const e = err as { code?: string; message?: string };
  // Inside the parentheses prescore wraps it in, a second statement is a syntax error at ";".
  if (e.code === '42601' && /multiple commands|at or near ";"/.test(e.message ?? '')) {
    return `${field} must be one SELECT statement (it holds several: remove the ";" and what follows)`;
  }
  return `${field}: PostgreSQL refuses it: ${e.message ?? String(err)}`;
}
