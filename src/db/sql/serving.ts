import type { Queryable } from '../pool.js';

/**
 * `prescore.serving`: the run that answers for each (job, date). Swapped in the publish
 * transaction; readers (the API) learn of every change on PUBLISH_CHANNEL.
 */
export const PUBLISH_CHANNEL = 'prescore_publish';

export interface PointerRow {
  job: string;
  date: string;
  runId: string;
  /** The run it reads through to, when it is a layer (layers.ts); null: it holds all its rows. */
  baseRunId: string | null;
  modelName: string;
  modelVersion: number;
  publishedAt: Date;
}

const SELECT_POINTERS = `
  SELECT s.job, s.date::text AS date, s.run_id::text AS run_id, r.base_run_id::text AS base_run_id,
         r.model_name, r.model_version,
         coalesce(r.published_at, s.published_at) AS published_at
    FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id`;

interface Row {
  job: string;
  date: string;
  run_id: string;
  base_run_id: string | null;
  model_name: string;
  model_version: number;
  published_at: Date;
}

function toPointer(r: Row): PointerRow {
  return {
    job: r.job,
    date: r.date,
    runId: r.run_id,
    baseRunId: r.base_run_id,
    modelName: r.model_name,
    modelVersion: r.model_version,
    publishedAt: r.published_at,
  };
}

/** Every serving pointer, or those of some jobs. */
export async function loadPointers(db: Queryable, jobs?: string[]): Promise<PointerRow[]> {
  const { rows } = jobs
    ? await db.query<Row>(`${SELECT_POINTERS} WHERE s.job = ANY ($1::text[])`, [jobs])
    : await db.query<Row>(SELECT_POINTERS);
  return rows.map(toPointer);
}

export async function loadPointer(db: Queryable, job: string, date: string): Promise<PointerRow | undefined> {
  const { rows } = await db.query<Row>(`${SELECT_POINTERS} WHERE s.job = $1 AND s.date = $2::date`, [job, date]);
  return rows[0] && toPointer(rows[0]);
}

export async function publishedDates(db: Queryable, job: string): Promise<string[]> {
  const { rows } = await db.query<{ date: string }>('SELECT date::text FROM prescore.serving WHERE job = $1 ORDER BY date', [
    job,
  ]);
  return rows.map((r) => r.date);
}

/**
 * Points (job, date) at `runId` and returns the run it replaced; call inside the publish
 * transaction (the old pointer's row is locked until it commits).
 */
export async function swapPointer(db: Queryable, job: string, date: string, runId: string): Promise<string | undefined> {
  const prev = await db.query<{ run_id: string }>(
    'SELECT run_id::text FROM prescore.serving WHERE job = $1 AND date = $2::date FOR UPDATE',
    [job, date],
  );
  await db.query(
    `INSERT INTO prescore.serving (job, date, run_id) VALUES ($1, $2::date, $3::bigint)
     ON CONFLICT (job, date) DO UPDATE SET run_id = excluded.run_id, published_at = now()`,
    [job, date, runId],
  );
  return prev.rows[0]?.run_id;
}

/** Stops serving the dates of `job` older than its newest minus `retainDays`; returns them. */
export async function removeOldDates(db: Queryable, job: string, retainDays: number): Promise<string[]> {
  const { rows } = await db.query<{ date: string }>(
    `DELETE FROM prescore.serving
      WHERE job = $1 AND date < (SELECT max(date) FROM prescore.serving WHERE job = $1) - $2::int
      RETURNING date::text`,
    [job, retainDays],
  );
  return rows.map((r) => r.date);
}

/** Tells readers that `job`'s pointers changed (runId null: reload the job). */
export async function notifyPublished(db: Queryable, job: string, date: string | null, runId: string | null): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [
    PUBLISH_CHANNEL,
    JSON.stringify(date === null ? { job, runId } : { job, date, runId }),
  ]);
}

/** Which of these runs a serving pointer names (the run answering for its date). */
export async function servingRunIds(db: Queryable, runIds: readonly string[]): Promise<Set<string>> {
  if (runIds.length === 0) return new Set();
  const { rows } = await db.query<{ run_id: string }>(
    'SELECT run_id::text FROM prescore.serving WHERE run_id = ANY ($1::bigint[])',
    [runIds],
  );
  return new Set(rows.map((r) => r.run_id));
}

/** The newest published (serving) date of each job named that has one. */
export async function newestPublishedDates(db: Queryable, jobs: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ job: string; date: string }>(
    'SELECT job, max(date)::text AS date FROM prescore.serving WHERE job = ANY ($1::text[]) GROUP BY job',
    [jobs],
  );
  return new Map(rows.map((r) => [r.job, r.date]));
}
