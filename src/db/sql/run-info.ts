import type { Queryable } from '../pool.js';
import type { RunStatus } from './runs.js';

/** The public shape of a run (`runs show --json`). */
export interface RunInfo {
  id: string;
  job: string;
  date: string;
  status: RunStatus;
  trigger: string;
  modelName: string;
  modelVersion: number;
  rowsPlanned: number;
  rowsRead: number;
  rowsWritten: number;
  rowsRejected: number;
  /** Of rowsRead: rows carried over from the base run by an incremental run (predictions and rejects). */
  rowsCarried: number;
  /** An incremental job's run: how it was planned (full or from which base run, watermark, changed and gone keys). */
  incremental: Record<string, unknown> | null;
  chunks: number;
  chunksDone: number;
  startedAt: string;
  finishedAt: string | null;
  publishedAt: string | null;
  durationMs: number | null;
  rowsPerSecond: number | null;
  error: string | null;
  /** Held: the blocking quality gates it broke (`featurePsi 0.41 > 0.25 on f3 (block)`). */
  heldReason: string | null;
  /** A held run's review: who approved or rejected it, when, and why. */
  reviewedBy: string | null;
  reviewedAt: string | null;
  reviewReason: string | null;
}

const SELECT_RUN = `
  SELECT r.id::text, r.job, r.date::text, r.status, r.trigger, r.model_name, r.model_version,
         r.rows_planned, r.chunks, r.error, r.started_at, r.finished_at, r.published_at,
         r.held_reason, r.reviewed_by, r.reviewed_at, r.review_reason, r.rows_carried, r.incremental,
         coalesce(c.read, 0) AS read, coalesce(c.written, 0) AS written, coalesce(c.rejected, 0) AS rejected,
         coalesce(c.done, 0) AS done, coalesce(c.attempt_read, 0) AS attempt_read
    FROM prescore.runs r
    LEFT JOIN LATERAL (
      SELECT sum(rows_read) AS read, sum(rows_written) AS written, sum(rows_rejected) AS rejected,
             count(*) FILTER (WHERE status = 'done') AS done,
             sum(rows_read) FILTER (WHERE finished_at >= r.started_at) AS attempt_read
        FROM prescore.run_chunks WHERE run_id = r.id) c ON true`;

interface RunRow {
  id: string;
  job: string;
  date: string;
  status: RunStatus;
  trigger: string;
  model_name: string;
  model_version: number;
  rows_planned: string;
  chunks: number;
  error: string | null;
  started_at: Date;
  finished_at: Date | null;
  published_at: Date | null;
  held_reason: string | null;
  reviewed_by: string | null;
  reviewed_at: Date | null;
  review_reason: string | null;
  rows_carried: string;
  incremental: Record<string, unknown> | null;
  read: string;
  written: string;
  rejected: string;
  done: string;
  attempt_read: string;
}

function toInfo(r: RunRow): RunInfo {
  const durationMs = r.finished_at ? r.finished_at.getTime() - r.started_at.getTime() : null;
  const read = Number(r.read);
  return {
    id: r.id,
    job: r.job,
    date: r.date,
    status: r.status,
    trigger: r.trigger,
    modelName: r.model_name,
    modelVersion: r.model_version,
    rowsPlanned: Number(r.rows_planned),
    rowsRead: read,
    rowsWritten: Number(r.written),
    rowsRejected: Number(r.rejected),
    rowsCarried: Number(r.rows_carried),
    incremental: r.incremental,
    chunks: r.chunks,
    chunksDone: Number(r.done),
    startedAt: r.started_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
    publishedAt: r.published_at?.toISOString() ?? null,
    durationMs,
    // Of the last attempt (started_at moves on a retry): its own rows over its own time.
    rowsPerSecond: durationMs ? Math.round((Number(r.attempt_read) / durationMs) * 1000) : null,
    error: r.error,
    heldReason: r.held_reason,
    reviewedBy: r.reviewed_by,
    reviewedAt: r.reviewed_at?.toISOString() ?? null,
    reviewReason: r.review_reason,
  };
}

export async function getRun(db: Queryable, id: string): Promise<RunInfo | null> {
  const { rows } = await db.query<RunRow>(`${SELECT_RUN} WHERE r.id = $1::bigint`, [id]);
  return rows[0] ? toInfo(rows[0]) : null;
}

export interface RunFilter {
  /** Only this job. */
  job?: string;
  /** Only these jobs (a token's scope); an empty list matches nothing. */
  jobs?: readonly string[];
  status?: RunStatus;
  limit?: number;
}

/** Runs, newest first. */
export async function listRuns(db: Queryable, options: RunFilter = {}): Promise<RunInfo[]> {
  const { rows } = await db.query<RunRow>(
    `${SELECT_RUN}
      WHERE ($1::text IS NULL OR r.job = $1) AND ($3::text[] IS NULL OR r.job = ANY ($3)) AND ($4::text IS NULL OR r.status = $4)
      ORDER BY r.id DESC LIMIT $2`,
    [options.job ?? null, options.limit ?? 50, options.jobs ?? null, options.status ?? null],
  );
  return rows.map(toInfo);
}
