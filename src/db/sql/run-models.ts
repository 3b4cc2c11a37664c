import type { Queryable } from '../pool.js';

/**
 * `prescore.run_models` (migrations/007_challengers.sql): the models a run scores, pinned at
 * plan. Slot 0 is the champion (the run's own model), 1..3 its challengers in the job's order.
 * rows_written counts the predictions stored for the slot; rows_rejected the rows that model
 * alone could not score (non-finite output). Rows no model could score (bad features) are the
 * run's rejects, counted once for every slot: per slot, written + rejected + those = read.
 */
export interface RunModel {
  slot: number;
  ref: string;
  name: string;
  version: number;
  sha256: string;
  rowsWritten: number;
  rowsRejected: number;
}

export async function insertRunModels(
  db: Queryable,
  runId: string,
  models: { slot: number; ref: string; name: string; version: number; sha256: string }[],
): Promise<void> {
  await db.query(
    `INSERT INTO prescore.run_models (run_id, slot, ref, model_name, model_version, model_sha256)
     SELECT $1::bigint, s, r, n, v, h FROM unnest($2::smallint[], $3::text[], $4::text[], $5::int[], $6::text[]) AS m(s, r, n, v, h)`,
    [
      runId,
      models.map((m) => m.slot),
      models.map((m) => m.ref),
      models.map((m) => m.name),
      models.map((m) => m.version),
      models.map((m) => m.sha256),
    ],
  );
}

/**
 * Adds a chunk's counts, in the chunk's transaction (so a chunk rolled back adds nothing and a
 * committed one is never counted twice). Called last before COMMIT: the rows stay locked
 * only for the commit itself, so parallel chunks of a run hardly wait on each other.
 */
export async function addRunModelCounts(
  db: Queryable,
  runId: string,
  counts: { slot: number; written: number; rejected: number }[],
): Promise<void> {
  await db.query(
    `UPDATE prescore.run_models m SET rows_written = m.rows_written + c.w, rows_rejected = m.rows_rejected + c.r
       FROM unnest($2::smallint[], $3::bigint[], $4::bigint[]) AS c(s, w, r)
      WHERE m.run_id = $1::bigint AND m.slot = c.s`,
    [runId, counts.map((c) => c.slot), counts.map((c) => c.written), counts.map((c) => c.rejected)],
  );
}

/** A run's models by slot; `queryTimeoutMs` bounds the query (the read API's lookup timeout). */
export async function listRunModels(db: Queryable, runId: string, queryTimeoutMs?: number): Promise<RunModel[]> {
  const { rows } = await db.query<{
    slot: number;
    ref: string;
    model_name: string;
    model_version: number;
    model_sha256: string;
    rows_written: string;
    rows_rejected: string;
  }>({
    text: `SELECT slot, ref, model_name, model_version, model_sha256, rows_written, rows_rejected
             FROM prescore.run_models WHERE run_id = $1::bigint ORDER BY slot`,
    values: [runId],
    ...(queryTimeoutMs !== undefined ? { query_timeout: queryTimeoutMs } : {}),
  });
  return rows.map((r) => ({
    slot: r.slot,
    ref: r.ref,
    name: r.model_name,
    version: r.model_version,
    sha256: r.model_sha256,
    rowsWritten: Number(r.rows_written),
    rowsRejected: Number(r.rows_rejected),
  }));
}
