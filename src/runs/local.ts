import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pool } from '../db/pool.js';
import { resolveJob, type ResolvedJob } from '../definitions/check.js';
import type { JobFile } from '../definitions/load.js';
import type { InferencePool } from '../inference/pool.js';
import { sharedBytes } from '../inference/pool.js';
import { loadModelBytes } from '../models/registry.js';
import { executeChunk, type StageTimings } from './chunk.js';
import { finalizeRun } from './finalize.js';
import { ActiveRunError, checkDate, planRun } from './plan.js';
import { failRun, getRun, type RunInfo } from './store.js';

export interface Progress {
  runId: string;
  rowsPlanned: number;
  rowsRead: number;
  chunks: number;
  chunksDone: number;
}

export interface LocalRunOptions {
  date: string;
  trigger?: string;
  concurrency: number;
  onProgress?: (p: Progress) => void;
  onPlanned?: (runId: string) => void;
}

/** A run whose process stopped heartbeating this long ago is taken over by the next `run`. */
const STALE_MS = 60_000;
const HEARTBEAT_MS = 5_000;

/**
 * Plans, executes and publishes one run in this process (what `prescore run` does without
 * --queue): the same plan/chunk/finalize code the queue workers run, in a loop. A run left
 * behind by a killed process (no heartbeat for a minute) is resumed: its done chunks stay.
 */
export async function runLocally(
  pool: Pool,
  inference: InferencePool,
  log: Logger,
  jobFile: JobFile,
  options: LocalRunOptions,
): Promise<RunInfo> {
  const date = checkDate(options.date);
  const started = performance.now();
  const resolved = await resolveJob(pool, jobFile);
  let runId: string;
  let job: ResolvedJob = resolved;
  try {
    runId = (await planRun(pool, resolved, date, options.trigger ?? 'cli')).runId;
  } catch (err) {
    if (!(err instanceof ActiveRunError)) throw err;
    const stale = await pool.query<{ spec: ResolvedJob }>(
      `UPDATE prescore.runs SET heartbeat_at = now() WHERE id = $1::bigint AND status = 'running'
          AND heartbeat_at < now() - make_interval(secs => $2) RETURNING spec`,
      [err.runId, STALE_MS / 1000],
    );
    if (!stale.rows[0]) throw err;
    runId = err.runId;
    job = stale.rows[0].spec;
    log.warn({ runId, job: job.name, date }, 'resuming a run abandoned by its process');
  }
  options.onPlanned?.(runId);
  const planMs = performance.now() - started;
  const heartbeat = setInterval(() => {
    pool
      .query('UPDATE prescore.runs SET heartbeat_at = now() WHERE id = $1::bigint', [runId])
      .catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'heartbeat failed'));
  }, HEARTBEAT_MS);
  heartbeat.unref();
  try {
    const model = sharedBytes(await loadModelBytes(pool, job.model.name, job.model.version));
    const { rows: chunks } = await pool.query<{ chunk_no: number; lo: string | null; hi: string | null; status: string }>(
      'SELECT chunk_no, lo, hi, status FROM prescore.run_chunks WHERE run_id = $1::bigint ORDER BY chunk_no',
      [runId],
    );
    const before = await getRun(pool, runId);
    const progress: Progress = {
      runId,
      rowsPlanned: before?.rowsPlanned ?? 0,
      rowsRead: before?.rowsRead ?? 0,
      chunks: chunks.length,
      chunksDone: chunks.filter((c) => c.status === 'done').length,
    };
    options.onProgress?.(progress);
    const queue = chunks.filter((c) => c.status !== 'done');
    let failure: unknown;
    const stages: StageTimings = { read: 0, inferWait: 0, write: 0, commit: 0 };
    const chunksStart = performance.now();
    const lane = async () => {
      for (let c = queue.shift(); c && failure === undefined; c = queue.shift()) {
        try {
          const r = await executeChunk(
            pool,
            inference,
            { runId, date, job, model, chunkNo: c.chunk_no, lo: c.lo, hi: c.hi },
            (n) => {
              progress.rowsRead += n;
              options.onProgress?.(progress);
            },
          );
          for (const k of Object.keys(stages) as (keyof StageTimings)[]) stages[k] += r.timings[k];
          progress.chunksDone++;
          options.onProgress?.(progress);
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, lane));
    if (failure !== undefined) throw failure;
    const chunksMs = performance.now() - chunksStart;
    const finalizeStart = performance.now();
    await finalizeRun(pool, runId, log);
    const round = (v: number) => Math.round(v);
    log.info(
      {
        runId,
        planMs: round(planMs),
        chunksMs: round(chunksMs),
        finalizeMs: round(performance.now() - finalizeStart),
        chunkStagesMs: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, round(v)])),
      },
      'run timings',
    );
  } catch (err) {
    await failRun(pool, runId, errorMessage(err)).catch(() => undefined);
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
  return (await getRun(pool, runId))!;
}
