import type { Queryable } from '../pool.js';

/** `prescore.rejects`: one row per source row that was not scored, with its key and reason. */

/** Reject rows of a run (dropped with its predictions). */
export async function deleteRejects(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM prescore.rejects WHERE run_id = $1::bigint', [id]);
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
