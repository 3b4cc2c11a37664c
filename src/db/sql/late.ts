import type { Queryable } from '../pool.js';
import { runPredictions, type RunRef } from './layers.js';

/**
 * `prescore.late_predictions` (migration 009): keys a served run lacked, scored later by a queue
 * worker for that run (serving.onMiss "enqueue"). Readers are told of each stored key on
 * LATE_CHANNEL, in the transaction that stores it.
 */
export const LATE_CHANNEL = 'prescore_late';

/**
 * How long a "not in the source" answer stands before a read enqueues the key again: the row a
 * key lacked may land in the source minutes after the first read asked for it (a customer who
 * signed up after the night's run), where a reject (bad features) stands for the run's life.
 */
export const ABSENT_RECHECK_SECONDS = 60;

/** What a worker did with a late key: stored a score, a reject, an absence; or nothing (done already; the run no longer serves). */
export type LateOutcome = 'scored' | 'rejected' | 'absent' | 'skipped' | 'gone';

export interface LateRow {
  key: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
  /** Why there is no score (null: scored). */
  rejected: string | null;
  /** An absent-from-the-source answer old enough to be checked again. */
  stale: boolean;
}

/** The late rows of `keys` in a run (keys without one are absent from the map). */
export async function lateRows(db: Queryable, runId: string, keys: readonly string[]): Promise<Map<string, LateRow>> {
  const { rows } = await db.query<LateRow>({
    name: 'prescore_api_late_rows',
    text: `SELECT key, score, label, outputs, rejected,
                  absent AND scored_at < now() - make_interval(secs => $3) AS stale
             FROM prescore.late_predictions WHERE run_id = $1::bigint AND key = ANY ($2::text[])`,
    values: [runId, keys, ABSENT_RECHECK_SECONDS],
  });
  return new Map(rows.map((r) => [r.key, r]));
}

/**
 * Whether `runId` still serves some date, holding its serving row (FOR SHARE) until the
 * transaction ends: a publish or rollback swapping it away waits for a late row stored now (and
 * a publish then carries it), or swaps first and nothing is stored for a run no longer served.
 */
export async function lockServedRun(db: Queryable, runId: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM prescore.serving WHERE run_id = $1::bigint FOR SHARE', [runId]);
  return (rowCount ?? 0) > 0;
}

/** Whether a key of a run needs no scoring: it has a late row that is not a stale absence. */
export async function lateDone(db: Queryable, runId: string, key: string): Promise<boolean> {
  const row = (await lateRows(db, runId, [key])).get(key);
  return row !== undefined && !row.stale;
}

export interface LateResult {
  score: number | null;
  label: string | null;
  outputs: number[] | null;
  rejected: string | null;
  absent: boolean;
}

/**
 * Stores a key's late answer for a run and NOTIFYs readers; only an absent answer is ever
 * replaced (the source has the row now, or still has not).
 */
export async function storeLate(
  db: Queryable,
  runId: string,
  key: string,
  r: LateResult,
  model: { name: string; version: number },
): Promise<void> {
  await db.query(
    `INSERT INTO prescore.late_predictions (run_id, key, score, label, outputs, rejected, absent, model_name, model_version)
     VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (run_id, key) DO UPDATE SET score = excluded.score, label = excluded.label, outputs = excluded.outputs,
       rejected = excluded.rejected, absent = excluded.absent, scored_at = now(), carried_from = NULL
       WHERE late_predictions.absent`,
    [runId, key, r.score, r.label, r.outputs, r.rejected, r.absent, model.name, model.version],
  );
  await db.query('SELECT pg_notify($1, $2)', [LATE_CHANNEL, JSON.stringify({ runId, key })]);
}

/**
 * In the publish transaction of `run` (its partition attached), the late rows of the run it
 * replaces carried over for the keys it neither has nor rejected, when both pinned the same
 * model version (a late answer names the serving run's model). A layer has a key its own table
 * lacks when its base has it unmasked (layers.ts). Returns the rows carried.
 */
export async function carryLate(db: Queryable, previous: string, run: RunRef): Promise<number> {
  const { rowCount } = await db.query(
    `INSERT INTO prescore.late_predictions
       (run_id, key, score, label, outputs, rejected, absent, model_name, model_version, scored_at, carried_from)
     SELECT $2::bigint, l.key, l.score, l.label, l.outputs, l.rejected, l.absent, l.model_name, l.model_version, l.scored_at,
            coalesce(l.carried_from, l.run_id)
       FROM prescore.late_predictions l
       JOIN prescore.runs r ON r.id = $2::bigint
      WHERE l.run_id = $1::bigint AND l.model_name = r.model_name AND l.model_version = r.model_version
        AND NOT EXISTS (${runPredictions(run, '1', 'key = l.key')})
        AND NOT EXISTS (SELECT 1 FROM prescore.rejects j WHERE j.run_id = $2::bigint AND j.key = l.key)
     ON CONFLICT (run_id, key) DO NOTHING`,
    [previous, run.runId],
  );
  return rowCount ?? 0;
}

/** A run's late rows, when retention drops its predictions. */
export async function deleteLate(db: Queryable, runId: string): Promise<void> {
  await db.query('DELETE FROM prescore.late_predictions WHERE run_id = $1::bigint', [runId]);
}
