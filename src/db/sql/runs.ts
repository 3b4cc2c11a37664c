import { InputError } from '../../errors.js';
import { PG, pgCode } from '../codes.js';
import type { Queryable } from '../pool.js';
import { partitionRegclass } from './partitions.js';

/**
 * The run ledger, `prescore.runs`: every statement on it, and the names of its states.
 * A run is `running` (chunks being scored), then `finalizing`, then `published` (serving)
 * and later `superseded`; or it ends `failed` or `cancelled`; or it breaks a blocking quality
 * gate and is `held` until a person approves it (then published) or rejects it (`rejected`). At most one run of a (job, date)
 * is active, by a partial unique index over ACTIVE (migrations/001_init.sql).
 */
export const RUN_STATUSES = [
  'running',
  'finalizing',
  'published',
  'superseded',
  'failed',
  'cancelled',
  'held',
  'rejected',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export const ACTIVE: readonly RunStatus[] = ['running', 'finalizing'];
/** A run in these states is done with (held waits for a person, not for a process). */
export const TERMINAL: ReadonlySet<RunStatus> = new Set(['published', 'superseded', 'failed', 'cancelled', 'held', 'rejected']);

/** An SQL list of status literals, e.g. `('running', 'finalizing')`: constants only, never input. */
function list(statuses: readonly RunStatus[]): string {
  return `(${statuses.map((s) => `'${s}'`).join(', ')})`;
}
const ACTIVE_SQL = list(ACTIVE);

export function isActive(status: string): boolean {
  return (ACTIVE as readonly string[]).includes(status);
}

/** The newest run of (job, date), whatever its state. */
export async function latestRun(
  db: Queryable,
  job: string,
  date: string,
): Promise<{ id: string; status: RunStatus } | undefined> {
  const { rows } = await db.query<{ id: string; status: RunStatus }>(
    'SELECT id::text, status FROM prescore.runs WHERE job = $1 AND date = $2::date ORDER BY id DESC LIMIT 1',
    [job, date],
  );
  return rows[0];
}

/** The run as planned: the resolved job it pins, its date, and where it executes. */
export async function runPlan<Spec>(db: Queryable, id: string): Promise<{ spec: Spec; date: string; mode: string } | undefined> {
  const { rows } = await db.query<{ spec: Spec; date: string; mode: string }>(
    'SELECT spec, date::text, mode FROM prescore.runs WHERE id = $1::bigint',
    [id],
  );
  return rows[0];
}

export interface NewRun {
  job: string;
  date: string;
  trigger: string;
  model: { name: string; version: number; sha256: string };
  spec: unknown;
  rowsPlanned: number;
  chunks: number;
}

/**
 * Inserts a run in state running; undefined when (job, date) already has an active run (the
 * partial unique index decides, whatever the number of triggers racing).
 */
export async function insertRun(db: Queryable, run: NewRun): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO prescore.runs (job, date, status, trigger, model_name, model_version, model_sha256, spec, rows_planned, chunks)
     VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (job, date) WHERE status IN ${ACTIVE_SQL} DO NOTHING
     RETURNING id::text`,
    [
      run.job,
      run.date,
      run.trigger,
      run.model.name,
      run.model.version,
      run.model.sha256,
      JSON.stringify(run.spec),
      run.rowsPlanned,
      run.chunks,
    ],
  );
  return rows[0]?.id;
}

export async function activeRunId(db: Queryable, job: string, date: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text FROM prescore.runs WHERE job = $1 AND date = $2::date AND status IN ${ACTIVE_SQL}`,
    [job, date],
  );
  return rows[0]?.id;
}

/** True when (job, date) has any run at all: the scheduler triggers a date once, whatever came of it. */
export async function hasAnyRun(db: Queryable, job: string, date: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM prescore.runs WHERE job = $1 AND date = $2::date LIMIT 1', [job, date]);
  return (rowCount ?? 0) > 0;
}

/** Marks a run failed (unless it already ended); the previous published run keeps serving. */
export async function failRun(db: Queryable, id: string, error: string): Promise<void> {
  await db.query(
    `UPDATE prescore.runs SET status = 'failed', error = $2, finished_at = now()
      WHERE id = $1::bigint AND status IN ${ACTIVE_SQL}`,
    [id, error],
  );
}

/** A local run's process says it is alive. */
export async function heartbeat(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE prescore.runs SET heartbeat_at = now() WHERE id = $1::bigint', [id]);
}

/**
 * Takes over a local run whose process stopped heartbeating `staleSeconds` ago, while scoring
 * or while publishing (finalize is idempotent); true when this caller got it.
 */
export async function takeOverStale(db: Queryable, id: string, staleSeconds: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE prescore.runs SET heartbeat_at = now()
      WHERE id = $1::bigint AND status IN ${ACTIVE_SQL} AND mode = 'local'
        AND heartbeat_at < now() - make_interval(secs => $2)`,
    [id, staleSeconds],
  );
  return (rowCount ?? 0) > 0;
}

export async function markFinalizing(db: Queryable, id: string): Promise<void> {
  await db.query(`UPDATE prescore.runs SET status = 'finalizing' WHERE id = $1::bigint AND status = 'running'`, [id]);
}

/**
 * Makes a failed run running again with the next attempt number (fresh queue job ids).
 * Refused, naming the way out, while another run of the same (job, date) is active.
 */
export async function reopenFailedRun(db: Queryable, run: { id: string; job: string; date: string }): Promise<void> {
  try {
    await db.query(
      `UPDATE prescore.runs SET status = 'running', error = NULL, finished_at = NULL, attempt = attempt + 1,
              enqueued_at = NULL, heartbeat_at = now(), started_at = now()
        WHERE id = $1::bigint AND status = 'failed'`,
      [run.id],
    );
  } catch (err) {
    if (pgCode(err) === PG.uniqueViolation) {
      throw new InputError(`job ${run.job} already has an active run for ${run.date}; cancel it before retrying run ${run.id}`);
    }
    throw err;
  }
}

/** Cancels a running, finalizing or failed run; false when it was in another state. */
export async function markCancelled(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE prescore.runs SET status = 'cancelled', error = 'cancelled', finished_at = now()
      WHERE id = $1::bigint AND status IN ${list([...ACTIVE, 'failed'])}`,
    [id],
  );
  return (rowCount ?? 0) > 0;
}

/** Hands a run to the queue; its attempt number and state, or undefined when it does not exist. */
export async function markQueued(db: Queryable, id: string): Promise<{ attempt: number; status: RunStatus } | undefined> {
  const { rows } = await db.query<{ attempt: number; status: RunStatus }>(
    `UPDATE prescore.runs SET mode = 'queue' WHERE id = $1::bigint RETURNING attempt, status`,
    [id],
  );
  return rows[0];
}

export async function markEnqueued(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE prescore.runs SET enqueued_at = now() WHERE id = $1::bigint', [id]);
}

/** Active queue runs older than a few seconds (younger ones may still be being enqueued). */
export async function activeQueueRuns(db: Queryable): Promise<{ id: string; attempt: number }[]> {
  const { rows } = await db.query<{ id: string; attempt: number }>(
    `SELECT id::text, attempt FROM prescore.runs
      WHERE mode = 'queue' AND status IN ${ACTIVE_SQL} AND created_at < now() - interval '5 seconds'`,
  );
  return rows;
}

/** The run's job, date, state and spec, as finalize needs them. */
export async function runForFinalize<Spec>(
  db: Queryable,
  id: string,
): Promise<{ job: string; date: string; status: RunStatus; spec: Spec; readThrough: number } | undefined> {
  const { rows } = await db.query<{ job: string; date: string; status: RunStatus; spec: Spec; through: string | null }>(
    `SELECT job, date::text, status, spec, incremental->>'readThrough' AS through FROM prescore.runs WHERE id = $1::bigint`,
    [id],
  );
  const r = rows[0];
  // A layer's predictions read through to its base (db/sql/layers.ts) are not in its own table.
  return r && { job: r.job, date: r.date, status: r.status, spec: r.spec, readThrough: Number(r.through ?? 0) };
}

/** Locks the run's row for the publish transaction; its state at that moment. */
export async function lockRun(db: Queryable, id: string): Promise<RunStatus | undefined> {
  const { rows } = await db.query<{ status: RunStatus }>('SELECT status FROM prescore.runs WHERE id = $1::bigint FOR UPDATE', [
    id,
  ]);
  return rows[0]?.status;
}

export async function markPublished(
  db: Queryable,
  id: string,
  totals: { read: number; written: number; rejected: number },
): Promise<void> {
  await db.query(
    `UPDATE prescore.runs SET status = 'published', published_at = now(), finished_at = now(), heartbeat_at = now(),
            rows_read = $2, rows_written = $3, rows_rejected = $4, error = NULL
      WHERE id = $1::bigint`,
    [id, totals.read, totals.written, totals.rejected],
  );
}

/** A run that broke a blocking gate: not published; it waits for `runs approve` or `runs reject`. */
export async function markHeld(db: Queryable, id: string, reason: string): Promise<void> {
  await db.query(
    `UPDATE prescore.runs SET status = 'held', held_reason = $2, finished_at = now() WHERE id = $1::bigint AND status = 'finalizing'`,
    [id, reason],
  );
}

/**
 * Records a review of a held run and moves it on: to finalizing (approved, to be published)
 * or rejected. False when the run is not held.
 */
export async function markReviewed(
  db: Queryable,
  id: string,
  review: { approved: boolean; by: string; reason: string | null },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE prescore.runs SET status = $2, reviewed_by = $3, reviewed_at = now(), review_reason = $4,
            finished_at = CASE WHEN $2 = 'rejected' THEN now() ELSE finished_at END
      WHERE id = $1::bigint AND status = 'held'`,
    [id, review.approved ? 'finalizing' : 'rejected', review.by, review.reason],
  );
  return (rowCount ?? 0) > 0;
}

export async function markSuperseded(db: Queryable, id: string): Promise<void> {
  await db.query(`UPDATE prescore.runs SET status = 'superseded' WHERE id = $1::bigint`, [id]);
}

/** The published run of a date that stopped being served (retention) becomes superseded. */
export async function supersedeDate(db: Queryable, job: string, date: string): Promise<void> {
  await db.query(`UPDATE prescore.runs SET status = 'superseded' WHERE job = $1 AND date = $2::date AND status = 'published'`, [
    job,
    date,
  ]);
}

/** The ended runs of a date (not one still in flight, such as a backfill's). */
export async function endedRuns(db: Queryable, job: string, date: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text FROM prescore.runs WHERE job = $1 AND date = $2::date AND status NOT IN ${ACTIVE_SQL}`,
    [job, date],
  );
  return rows.map((r) => r.id);
}

/**
 * Runs of (job, date) no reader can reach any more: published or superseded ones beyond the
 * `keepRuns` kept, and failed or cancelled ones older than the run now serving. The kept are
 * the serving run, then the newest runs never rolled back from: a run a rollback moved away
 * from goes before the older run it was rolled back to.
 */
export async function expiredRuns(db: Queryable, job: string, date: string, keepRuns: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text FROM (
        SELECT id, row_number() OVER (
                 ORDER BY id = (SELECT run_id FROM prescore.serving WHERE job = $1 AND date = $2::date) DESC NULLS LAST,
                          rolled_back_at IS NOT NULL, id DESC) AS n
          FROM prescore.runs WHERE job = $1 AND date = $2::date AND status IN ('published', 'superseded')) r
      WHERE n > $3
     UNION ALL
     SELECT id::text FROM prescore.runs
      WHERE job = $1 AND date = $2::date AND status IN ('failed', 'cancelled')
        AND id < (SELECT run_id FROM prescore.serving WHERE job = $1 AND date = $2::date)`,
    [job, date, keepRuns],
  );
  return rows.map((r) => r.id);
}

/**
 * Of these runs, those a layer still reads through to (layers.ts), with the layers: a layer
 * whose predictions table is still there, whatever its state (a running, held or failed one
 * may still publish). Retention keeps such a base run.
 */
export async function basesInUse(db: Queryable, ids: readonly string[]): Promise<Map<string, string[]>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ base: string; layers: string[] }>(
    `SELECT base_run_id::text AS base, array_agg(id::text ORDER BY id) AS layers FROM prescore.runs
      WHERE base_run_id = ANY ($1::bigint[]) AND ${partitionRegclass('id')} IS NOT NULL
      GROUP BY base_run_id`,
    [ids],
  );
  return new Map(rows.map((r) => [r.base, r.layers]));
}

/**
 * Retention's claim on a run's tables, in a transaction that locks the run's row first: the
 * layers whose table is still there that read through to it (then it is kept, see
 * markKeptAsBase), whether a pointer serves it (a rollback may have made it serve again since
 * retention chose it: then it stays), or neither, and then `dropped_at` is set before its tables
 * go. A plan that reads through to the run (lockBase in carry.ts) and a rollback to it
 * (rollback.ts) hold its row until they commit and look at `dropped_at`: so either the claim
 * waits for them and sees the new layer or pointer, or they see the claim.
 */
export async function claimDrop(db: Queryable, id: string): Promise<{ layers: string[]; serving: boolean }> {
  await db.query('SELECT 1 FROM prescore.runs WHERE id = $1::bigint FOR UPDATE', [id]);
  const layers = (await basesInUse(db, [id])).get(id) ?? [];
  const { rowCount } = await db.query('SELECT 1 FROM prescore.serving WHERE run_id = $1::bigint', [id]);
  const serving = (rowCount ?? 0) > 0;
  if (layers.length === 0 && !serving) await db.query('UPDATE prescore.runs SET dropped_at = now() WHERE id = $1::bigint', [id]);
  return { layers, serving };
}

/** Whether retention has claimed the run's tables (claimDrop): they are going, whatever is still there. */
export async function claimedForDrop(db: Queryable, id: string): Promise<boolean> {
  const { rows } = await db.query<{ d: boolean }>('SELECT dropped_at IS NOT NULL AS d FROM prescore.runs WHERE id = $1::bigint', [
    id,
  ]);
  return rows[0]?.d ?? false;
}

/** Marks a run that retention keeps only for the layers reading through to it; true when newly marked. */
export async function markKeptAsBase(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE prescore.runs SET kept_as_base = true WHERE id = $1::bigint AND NOT kept_as_base', [
    id,
  ]);
  return (rowCount ?? 0) > 0;
}

/**
 * The job's runs retention kept as bases that nothing needs any more: their table is still
 * there, no layer whose table is still there reads through to them, and no serving pointer
 * names them (a rollback may have made one serve again).
 */
export async function releasedBases(db: Queryable, job: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT r.id::text FROM prescore.runs r
      WHERE r.job = $1 AND r.kept_as_base AND ${partitionRegclass('r.id')} IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM prescore.runs l WHERE l.base_run_id = r.id AND ${partitionRegclass('l.id')} IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM prescore.serving s WHERE s.run_id = r.id)
      ORDER BY r.id`,
    [job],
  );
  return rows.map((r) => r.id);
}

/** The newest run of each date of a job in [from, to], with its state. */
export async function latestRunsBetween(
  db: Queryable,
  job: string,
  from: string,
  to: string,
): Promise<{ date: string; id: string; status: RunStatus }[]> {
  const { rows } = await db.query<{ date: string; id: string; status: RunStatus }>(
    `SELECT DISTINCT ON (date) date::text, id::text, status FROM prescore.runs
      WHERE job = $1 AND date BETWEEN $2::date AND $3::date ORDER BY date, id DESC`,
    [job, from, to],
  );
  return rows;
}

/** The newest run of a job, any date and state: its id and the resolved job it planned with. */
export async function newestJobRun<Spec>(db: Queryable, job: string): Promise<{ id: string; spec: Spec } | undefined> {
  const { rows } = await db.query<{ id: string; spec: Spec }>(
    'SELECT id::text, spec FROM prescore.runs WHERE job = $1 ORDER BY id DESC LIMIT 1',
    [job],
  );
  return rows[0];
}

/** A published run as the read API computes its misses: the plan, its date, and whether it rejected any row. */
export async function servedRunPlan<Spec>(
  db: Queryable,
  id: string,
): Promise<{ spec: Spec; date: string; rejected: boolean } | undefined> {
  const { rows } = await db.query<{ spec: Spec; date: string; rejected: boolean }>(
    'SELECT spec, date::text, coalesce(rows_rejected, 1) > 0 AS rejected FROM prescore.runs WHERE id = $1::bigint',
    [id],
  );
  return rows[0];
}
