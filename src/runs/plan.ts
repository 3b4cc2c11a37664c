import { InputError } from '../errors.js';
import { withTransaction, type Pool } from '../db/pool.js';
import type { ResolvedJob } from '../definitions/check.js';
import { planChunks, type ChunkPlan } from '../source/plan.js';
import { partitionName } from './store.js';

export interface PlannedRun {
  runId: string;
  job: ResolvedJob;
  date: string;
  rows: number;
  chunks: ChunkPlan[];
  /** False when an active run of (job, date) already existed and this call attached to it. */
  created: boolean;
}

export function checkDate(date: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!m || !d || d.toISOString().slice(0, 10) !== date) {
    throw new InputError(`date "${date}" is not a calendar date in YYYY-MM-DD form, e.g. 2026-11-23`);
  }
  return date;
}

/**
 * Plans a run of (job, date): pins the model version, creates the run row, its chunk rows
 * and its empty predictions table, all in one transaction. The partial unique index on runs
 * makes this the single point where a second trigger of the same (job, date) is refused.
 */
export async function planRun(pool: Pool, job: ResolvedJob, date: string, trigger: string): Promise<PlannedRun> {
  checkDate(date);
  const { rows, chunks } = await planChunks(pool, job, date);
  if (rows === 0) {
    throw new InputError(
      `job ${job.name}: no rows in ${job.spec.source.table ?? 'the source query'} for ${job.spec.source.partition} = ${date}; nothing to score (is the feature table loaded?)`,
    );
  }
  return withTransaction(pool, async (client) => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO prescore.runs (job, date, status, trigger, model_name, model_version, model_sha256, spec, rows_planned, chunks)
       VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (job, date) WHERE status IN ('running', 'finalizing') DO NOTHING
       RETURNING id::text`,
      [job.name, date, trigger, job.model.name, job.model.version, job.model.sha256, JSON.stringify(job), rows, chunks.length],
    );
    const runId = inserted.rows[0]?.id;
    if (runId === undefined) {
      const active = await client.query<{ id: string }>(
        `SELECT id::text FROM prescore.runs WHERE job = $1 AND date = $2 AND status IN ('running', 'finalizing')`,
        [job.name, date],
      );
      throw new ActiveRunError(job.name, date, active.rows[0]?.id ?? '?');
    }
    await client.query(
      `INSERT INTO prescore.run_chunks (run_id, chunk_no, lo, hi, rows_planned)
       SELECT $1::bigint, n, lo, hi, r FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[]) AS c(n, lo, hi, r)`,
      [runId, chunks.map((c) => c.chunkNo), chunks.map((c) => c.lo), chunks.map((c) => c.hi), chunks.map((c) => c.rowsPlanned)],
    );
    const table = partitionName(runId);
    // Same columns as the parent, a CHECK that lets ATTACH skip its validation scan, no index yet.
    await client.query(
      `CREATE TABLE prescore.${table} (LIKE prescore.predictions INCLUDING DEFAULTS,
         CONSTRAINT ${table}_run CHECK (run_id = ${BigInt(runId)}))`,
    );
    return { runId, job, date, rows, chunks, created: true };
  });
}

export class ActiveRunError extends InputError {
  constructor(
    readonly job: string,
    readonly date: string,
    readonly runId: string,
  ) {
    super(`job ${job} already has an active run for ${date} (run ${runId}); wait for it or cancel it`);
    this.name = 'ActiveRunError';
  }
}
