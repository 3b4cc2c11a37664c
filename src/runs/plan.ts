import { withTransaction, type Pool } from '../db/pool.js';
import { insertChunks } from '../db/sql/chunks.js';
import { createPartition } from '../db/sql/partitions.js';
import { insertRunModels } from '../db/sql/run-models.js';
import { activeRunId, insertRun } from '../db/sql/runs.js';
import { checkDate } from '../dates.js';
import type { ResolvedJob } from '../definitions/check.js';
import { ActiveRunError, NoRowsError } from '../errors.js';
import { planChunks, type ChunkPlan } from '../source/plan.js';
import { applyIncremental, decideIncremental } from './incremental.js';

export interface PlannedRun {
  runId: string;
  job: ResolvedJob;
  date: string;
  rows: number;
  chunks: ChunkPlan[];
}

/**
 * Plans a run of (job, date): pins the model versions (champion and challengers, in the run's
 * spec and in run_models: promoting an alias later changes the next run, never this one),
 * creates the run row, its chunk rows and its empty predictions tables, all in one transaction. The partial unique index on runs
 * makes this the single point where a second trigger of the same (job, date) is refused
 * (ActiveRunError, naming the run to follow instead).
 */
export async function planRun(
  pool: Pool,
  job: ResolvedJob,
  date: string,
  trigger: string,
  options: { full?: boolean } = {},
): Promise<PlannedRun> {
  checkDate(date);
  // An incremental job's run from a base run plans its chunks over its changed keys (runs/incremental.ts).
  const incremental = await decideIncremental(pool, job, date, options.full ?? false);
  const planned = incremental?.base ? null : await planChunks(pool, job, date);
  if (planned?.rows === 0) {
    throw new NoRowsError(
      `job ${job.name}: no rows in ${job.spec.source.table ?? 'the source query'} for ${job.spec.source.partition} = ${date}; nothing to score (is the feature table loaded?)`,
    );
  }
  return withTransaction(pool, async (client) => {
    const runId = await insertRun(client, {
      job: job.name,
      date,
      trigger,
      model: job.model,
      spec: incremental?.base ? { ...job, changedKeys: { nullKeys: incremental.nullKeys } } : job,
      rowsPlanned: planned?.rows ?? 0,
      chunks: planned?.chunks.length ?? 0,
    });
    if (runId === undefined) throw new ActiveRunError(job.name, date, (await activeRunId(client, job.name, date)) ?? '?');
    if (planned) await insertChunks(client, runId, planned.chunks);
    const challengers = job.challengers ?? [];
    await insertRunModels(client, runId, [
      { slot: 0, ref: job.spec.model, ...job.model },
      ...challengers.map((c) => ({ slot: c.slot, ref: c.ref, ...c.model })),
    ]);
    await createPartition(client, runId, challengers.length > 0);
    const { rows, chunks } = incremental ? await applyIncremental(client, runId, job, date, incremental, planned) : planned!;
    return { runId, job, date, rows, chunks };
  });
}
