import { setTimeout as sleep } from 'node:timers/promises';
import { ActiveRunError, RunError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pool } from '../db/pool.js';
import { resolveJob, type ResolvedJob } from '../definitions/check.js';
import type { JobFile } from '../definitions/load.js';
import type { InferencePool } from '../inference/pool.js';
import { sharedBytes } from '../inference/pool.js';
import { loadModelBytes } from '../models/registry.js';
import { executeChunk, type StageTimings } from './chunk.js';
import { finalizeRun } from './finalize.js';
import { checkDate } from '../dates.js';
import { listChunks } from '../db/sql/chunks.js';
import { failRun, heartbeat as beat, runPlan, takeOverStale } from '../db/sql/runs.js';
import { getRun, type RunInfo } from '../db/sql/run-info.js';
import { planRun } from './plan.js';

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
  /** An incremental job: a full run (carry nothing over). */
  full?: boolean;
  onProgress?: (p: Progress) => void;
  onPlanned?: (runId: string) => void;
}

/** A local run whose process stopped heartbeating this long ago is taken over by the next `run`. */
const STALE_MS = 60_000;
/** Attempts of a chunk whose failure was transient, in this process (the queue has its own). */
const LOCAL_CHUNK_ATTEMPTS = 3;
const HEARTBEAT_MS = 5_000;

/**
 * Plans a run of (job, date), or takes over a local run of it whose process died (no
 * heartbeat for a minute): its done chunks stay done. Any other active run is an error.
 */
export async function planOrResume(
  pool: Pool,
  log: Logger,
  jobFile: JobFile,
  date: string,
  trigger: string,
  full = false,
): Promise<string> {
  checkDate(date);
  const resolved = await resolveJob(pool, jobFile);
  try {
    return (await planRun(pool, resolved, date, trigger, { full })).runId;
  } catch (err) {
    if (!(err instanceof ActiveRunError)) throw err;
    // Finalizing too: a process killed while publishing leaves the run there, and finalize is
    // idempotent (it re-checks the counts and publishes once).
    if (!(await takeOverStale(pool, err.runId, STALE_MS / 1000))) throw err;
    log.warn({ runId: err.runId, job: jobFile.spec.name, date }, 'resuming a run abandoned by its process');
    return err.runId;
  }
}

/**
 * Plans, executes and publishes one run in this process (what `prescore run` does without
 * --queue): the same plan/chunk/finalize code the queue workers run, in a loop.
 */
export async function runLocally(
  pool: Pool,
  inference: InferencePool,
  log: Logger,
  jobFile: JobFile,
  options: LocalRunOptions,
): Promise<RunInfo> {
  const started = performance.now();
  const date = checkDate(options.date);
  const runId = await planOrResume(pool, log, jobFile, date, options.trigger ?? 'cli', options.full);
  options.onPlanned?.(runId);
  return executeLocally(pool, inference, log, runId, options, performance.now() - started);
}

/** Executes the pending chunks of a planned run in this process, then finalizes it. */
export async function executeLocally(
  pool: Pool,
  inference: InferencePool,
  log: Logger,
  runId: string,
  options: Pick<LocalRunOptions, 'concurrency' | 'onProgress'>,
  planMs = 0,
): Promise<RunInfo> {
  const heartbeat = setInterval(() => {
    beat(pool, runId).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'heartbeat failed'));
  }, HEARTBEAT_MS);
  heartbeat.unref();
  try {
    const plan = await runPlan<ResolvedJob>(pool, runId);
    if (!plan) throw new RunError(runId, `run ${runId} does not exist`);
    const { spec: job, date } = plan;
    const model = sharedBytes(await loadModelBytes(pool, job.model.name, job.model.version));
    const challengers = await Promise.all(
      (job.challengers ?? []).map(async (c) => sharedBytes(await loadModelBytes(pool, c.model.name, c.model.version))),
    );
    const chunks = await listChunks(pool, runId);
    const before = await getRun(pool, runId);
    const progress: Progress = {
      runId,
      rowsPlanned: before?.rowsPlanned ?? 0,
      rowsRead: before?.rowsRead ?? 0,
      chunks: chunks.length,
      chunksDone: chunks.filter((c) => c.done).length,
    };
    options.onProgress?.(progress);
    const queue = chunks.filter((c) => !c.done);
    let failure: unknown;
    const stages: StageTimings = { read: 0, inferWait: 0, write: 0, commit: 0 };
    // Per model of the run (slot 0 the champion), its threads' time: what each model costs.
    const inferMs = [job.model, ...(job.challengers ?? []).map((c) => c.model)].map(() => 0);
    const chunksStart = performance.now();
    const attempts = new Map<number, number>();
    const lane = async () => {
      for (let c = queue.shift(); c && failure === undefined; c = queue.shift()) {
        let rows = 0;
        try {
          const task = { runId, date, job, model, challengers, chunkNo: c.chunkNo, lo: c.lo, hi: c.hi };
          const r = await executeChunk(pool, inference, task, (n) => {
            rows += n;
            progress.rowsRead += n;
            options.onProgress?.(progress);
          });
          if (r.status === 'inactive') {
            const now = await getRun(pool, runId);
            failure ??= new RunError(runId, `run ${runId} was ${now?.status ?? 'removed'} while it ran; stopped`);
            continue;
          }
          for (const k of Object.keys(stages) as (keyof StageTimings)[]) stages[k] += r.timings[k];
          r.inferMs.forEach((ms, i) => (inferMs[i] = (inferMs[i] ?? 0) + ms));
          progress.chunksDone++;
          options.onProgress?.(progress);
        } catch (err) {
          // Transient (a timeout, a connection lost): the chunk rolled back; try it again, as
          // the queue would. Bad input or a model error fails the run at once.
          const attempt = (attempts.get(c.chunkNo) ?? 0) + 1;
          attempts.set(c.chunkNo, attempt);
          if (err instanceof RunError && attempt < LOCAL_CHUNK_ATTEMPTS) {
            progress.rowsRead -= rows;
            log.warn({ runId, chunkNo: c.chunkNo, attempt, err: errorMessage(err) }, 'chunk failed; will retry');
            await sleep(1000 * attempt);
            queue.push(c);
          } else failure ??= err;
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
        inferMsByModel: Object.fromEntries(
          [job.model, ...(job.challengers ?? []).map((c) => c.model)].map((m, i) => [
            `${m.name} v${m.version}`,
            round(inferMs[i]!),
          ]),
        ),
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
