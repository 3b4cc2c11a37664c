import type { Queryable } from '../pool.js';
import { partitionRegclass } from './partitions.js';
import type { RunStatus } from './runs.js';

/**
 * `prescore.rollbacks` (migrations/008_rollback.sql): the record of every rollback, and the
 * statements that find and mark the runs a rollback moves between.
 */
export interface RollbackRecord {
  id: string;
  job: string;
  date: string;
  from: string;
  to: string;
  by: string;
  reason: string | null;
  at: string;
}

/** The run serving (job, date), its row locked until the transaction ends; undefined when none. */
export async function lockServing(db: Queryable, job: string, date: string): Promise<string | undefined> {
  const { rows } = await db.query<{ run_id: string }>(
    'SELECT run_id::text FROM prescore.serving WHERE job = $1 AND date = $2::date FOR UPDATE',
    [job, date],
  );
  return rows[0]?.run_id;
}

/** Runs of (job, date) that were published (serving now or superseded since), newest first. */
export async function publishedRuns(db: Queryable, job: string, date: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text FROM prescore.runs WHERE job = $1 AND date = $2::date AND status IN ('published', 'superseded')
      ORDER BY id DESC`,
    [job, date],
  );
  return rows.map((r) => r.id);
}

/**
 * Which of these runs still have their predictions attached (not dropped by retention): for a
 * layer, its base's too, as it reads every key it did not store through to it.
 */
export async function keptRuns(db: Queryable, runIds: readonly string[]): Promise<Set<string>> {
  if (runIds.length === 0) return new Set();
  const attached = (id: string) => `EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = ${partitionRegclass(id)})`;
  const { rows } = await db.query<{ id: string }>(
    `SELECT r.id::text FROM prescore.runs r
      WHERE r.id = ANY ($1::bigint[]) AND ${attached('r.id')} AND (r.base_run_id IS NULL OR ${attached('r.base_run_id')})`,
    [runIds],
  );
  return new Set(rows.map((r) => r.id));
}

/** A run's job, date and state; with `lock`, its row locked until the transaction ends. */
export async function runRow(
  db: Queryable,
  id: string,
  lock = false,
): Promise<{ id: string; job: string; date: string; status: RunStatus } | undefined> {
  const { rows } = await db.query<{ id: string; job: string; date: string; status: RunStatus }>(
    `SELECT id::text, job, date::text, status FROM prescore.runs WHERE id = $1::bigint${lock ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0];
}

/**
 * Moves the run states with a rollback: the run it leaves is superseded and marked rolled back
 * (retention drops it first), the run it returns to is published again. Its published_at stays
 * the time its predictions were first published.
 */
export async function markRolledBack(db: Queryable, from: string, to: string): Promise<void> {
  await db.query(`UPDATE prescore.runs SET status = 'superseded', rolled_back_at = now() WHERE id = $1::bigint`, [from]);
  await db.query(`UPDATE prescore.runs SET status = 'published', rolled_back_at = NULL WHERE id = $1::bigint`, [to]);
}

interface Row {
  id: string;
  job: string;
  date: string;
  from_run_id: string;
  to_run_id: string;
  by: string;
  reason: string | null;
  at: Date;
}

function toRecord(r: Row): RollbackRecord {
  return {
    id: r.id,
    job: r.job,
    date: r.date,
    from: r.from_run_id,
    to: r.to_run_id,
    by: r.by,
    reason: r.reason,
    at: r.at.toISOString(),
  };
}

const COLUMNS = 'id::text, job, date::text, from_run_id::text, to_run_id::text, by, reason, at';

export async function insertRollback(
  db: Queryable,
  r: { job: string; date: string; from: string; to: string; by: string; reason: string | null },
): Promise<RollbackRecord> {
  const { rows } = await db.query<Row>(
    `INSERT INTO prescore.rollbacks (job, date, from_run_id, to_run_id, by, reason)
     VALUES ($1, $2::date, $3::bigint, $4::bigint, $5, $6) RETURNING ${COLUMNS}`,
    [r.job, r.date, r.from, r.to, r.by, r.reason],
  );
  return toRecord(rows[0]!);
}

/** The rollbacks of a job (or every job), newest first. */
export async function listRollbacks(db: Queryable, job?: string, limit = 50): Promise<RollbackRecord[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM prescore.rollbacks WHERE ($1::text IS NULL OR job = $1) ORDER BY id DESC LIMIT $2`,
    [job ?? null, limit],
  );
  return rows.map(toRecord);
}
