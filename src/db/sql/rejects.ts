import type { Queryable } from '../pool.js';
import { runLiteral } from './layers.js';

/** `prescore.rejects`: one row per source row that was not scored, with its key and reason. */

/** Reject rows of a run, its challengers' too (dropped with its predictions). */
export async function deleteRejects(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM prescore.rejects WHERE run_id = $1::bigint', [id]);
  await db.query('DELETE FROM prescore.challenger_rejects WHERE run_id = $1::bigint', [id]);
}

/** Rows a challenger alone could not score (its output was NaN or infinite), by slot. */
export async function insertChallengerRejects(
  db: Queryable,
  id: string,
  rejects: { slot: number; key: string | null; reason: string }[],
): Promise<void> {
  if (rejects.length === 0) return;
  await db.query(
    `INSERT INTO prescore.challenger_rejects (run_id, slot, key, reason)
     SELECT $1::bigint, s, k, r FROM unnest($2::smallint[], $3::text[], $4::text[]) AS x(s, k, r)`,
    [id, rejects.map((r) => r.slot), rejects.map((r) => r.key), rejects.map((r) => r.reason)],
  );
}

/** A few reject rows of a run, for error messages. */
export async function sampleRejects(db: Queryable, id: string, limit = 3): Promise<{ key: string | null; reason: string }[]> {
  const { rows } = await db.query<{ key: string | null; reason: string }>(
    'SELECT key, reason FROM prescore.rejects WHERE run_id = $1::bigint LIMIT $2',
    [id, limit],
  );
  return rows;
}

export async function insertRejects(db: Queryable, id: string, rejects: { key: string | null; reason: string }[]): Promise<void> {
  if (rejects.length === 0) return;
  await db.query(
    `INSERT INTO prescore.rejects (run_id, key, reason) SELECT $1::bigint, k, r FROM unnest($2::text[], $3::text[]) AS x(k, r)`,
    [id, rejects.map((r) => r.key), rejects.map((r) => r.reason)],
  );
}

/** A run's rejects, by key: what `prescore rejects` lists. */
export async function listRejects(
  db: Queryable,
  runId: string,
  limit: number,
): Promise<{ key: string | null; reason: string }[]> {
  const { rows } = await db.query<{ key: string | null; reason: string }>(
    'SELECT key, reason FROM prescore.rejects WHERE run_id = $1::bigint ORDER BY key NULLS FIRST LIMIT $2',
    [runId, limit],
  );
  return rows;
}

/**
 * A run's rejects counted by reason, values taken out (`f0 = 1e+300 overflows float32` and
 * `f0 = -3e+39 ...` count as one reason).
 */
export async function rejectCounts(db: Queryable, runId: string): Promise<Record<string, number>> {
  const { rows } = await db.query<{ reason: string; n: string }>(
    `SELECT regexp_replace(reason, ' = \\S+ overflows', ' overflows') AS reason, count(*) AS n
       FROM prescore.rejects WHERE run_id = $1::bigint GROUP BY 1 ORDER BY 2 DESC, 1`,
    [runId],
  );
  return Object.fromEntries(rows.map((r) => [r.reason, Number(r.n)]));
}

/** Why a key of a run was rejected, if it was. */
export async function rejectReason(db: Queryable, runId: string, key: string): Promise<string | undefined> {
  const { rows } = await db.query<{ reason: string }>(
    'SELECT reason FROM prescore.rejects WHERE run_id = $1::bigint AND key = $2 LIMIT 1',
    [runId, key],
  );
  return rows[0]?.reason;
}

/** A run's rejects with a key, one reason per key, in byte order of the key: what a bundle stores. */
export function bundleRejectsQuery(runId: string): string {
  return `SELECT DISTINCT ON (key COLLATE "C") key, reason FROM prescore.rejects
           WHERE run_id = ${runLiteral(runId)} AND key IS NOT NULL ORDER BY key COLLATE "C", reason`;
}

/** Why each of `keys` was rejected by a run, for the keys it rejected (one indexed probe per key). */
export async function rejectReasons(db: Queryable, runId: string, keys: readonly string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ key: string; reason: string }>({
    name: 'prescore_api_reject_reasons',
    text: 'SELECT DISTINCT ON (key) key, reason FROM prescore.rejects WHERE run_id = $1::bigint AND key = ANY ($2::text[]) ORDER BY key, reason',
    values: [runId, keys],
  });
  return new Map(rows.map((r) => [r.key, r.reason]));
}

/** Every keyed reject of a run with its reason, for the API's in-memory copy of a run. */
export async function rejectsOfRun(db: Queryable, runId: string): Promise<{ key: string; reason: string }[]> {
  const { rows } = await db.query<{ key: string; reason: string }>(
    'SELECT key, reason FROM prescore.rejects WHERE run_id = $1::bigint AND key IS NOT NULL',
    [runId],
  );
  return rows;
}
