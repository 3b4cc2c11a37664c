import { UnrecoverableError, type Job } from 'bullmq';
import type { Config } from '../config.js';
import { InputError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pool } from '../db/pool.js';
import type { ResolvedJob } from '../definitions/check.js';
import { InferencePool } from '../inference/pool.js';
import type { WorkerMetrics } from '../metrics/worker.js';
import { ModelBytes } from '../models/bytes.js';
import { executeChunk } from '../runs/chunk.js';
import { finalizeRun } from '../runs/finalize.js';
import { chunkBounds } from '../db/sql/chunks.js';
import { failRun, runPlan } from '../db/sql/runs.js';
import { CHUNK_QUEUE, FINALIZE_QUEUE, type QueueBackend } from './connection.js';
import { reconcileRuns, type ChunkJobData, type FinalizeJobData } from './flows.js';
import { startLateWorker } from './late.js';

interface RunContext {
  job: ResolvedJob;
  date: string;
  model: Uint8Array;
  challengers: Uint8Array[];
}

export interface WorkerHandle {
  close(): Promise<void>;
}

const RECONCILE_MS = 10_000;

/**
 * A queue worker: scores chunks (N at once), finalizes runs and scores late keys for any number
 * of runs, on any number of machines. Inference runs in worker threads so this event loop stays free to renew
 * BullMQ locks. Bad input fails the run at once (no retries); other errors retry with backoff
 * and fail the run on the last attempt.
 */
export async function startWorker(
  pool: Pool,
  backend: QueueBackend,
  config: Config,
  log: Logger,
  concurrency: number,
  metrics?: WorkerMetrics,
): Promise<WorkerHandle> {
  const inference = new InferencePool(
    Math.min(concurrency, config.inferenceThreads),
    metrics && ((sha256, seconds) => metrics.inferred(sha256, seconds)),
  );
  const runs = new Map<string, Promise<RunContext>>();
  const models = new ModelBytes(pool);

  const context = (runId: string): Promise<RunContext> => {
    let ctx = runs.get(runId);
    if (!ctx) {
      ctx = (async () => {
        const plan = await runPlan<ResolvedJob>(pool, runId);
        if (!plan) throw new InputError(`run ${runId} does not exist`);
        const job = plan.spec;
        for (const m of [job.model, ...(job.challengers ?? []).map((c) => c.model)]) metrics?.model(m.sha256, m.name, m.version);
        const challengers = await Promise.all((job.challengers ?? []).map((c) => models.get(c.model)));
        return { job, date: plan.date, model: await models.get(job.model), challengers };
      })();
      ctx.catch(() => runs.delete(runId));
      runs.set(runId, ctx);
      if (runs.size > 100) runs.delete(runs.keys().next().value!);
    }
    return ctx;
  };

  /** Decides whether a failure ends the run now; returns the error BullMQ should see. */
  const fail = async (job: Job, runId: string, err: unknown): Promise<Error> => {
    const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const message = errorMessage(err);
    if (err instanceof InputError || last) {
      await failRun(pool, runId, message).catch(() => undefined);
      log.error({ runId, job: job.id, err: message }, 'run failed');
      return new UnrecoverableError(message);
    }
    log.warn({ runId, job: job.id, attempt: job.attemptsMade + 1, err: message }, 'will retry');
    return err instanceof Error ? err : new Error(message);
  };

  const chunkWorker = backend.worker(
    CHUNK_QUEUE,
    async (job: Job<ChunkJobData>) => {
      const { runId, chunkNo } = job.data;
      try {
        const ctx = await context(runId);
        const bounds = await chunkBounds(pool, runId, chunkNo);
        if (!bounds) throw new InputError(`run ${runId} has no chunk ${chunkNo}`);
        log.debug({ runId, chunkNo, pid: process.pid }, 'chunk started');
        const r = await executeChunk(pool, inference, {
          runId,
          date: ctx.date,
          job: ctx.job,
          model: ctx.model,
          challengers: ctx.challengers,
          chunkNo,
          ...bounds,
        });
        log.debug({ runId, chunkNo, status: r.status, rows: r.read }, 'chunk finished');
        if (r.status !== 'inactive') metrics?.chunk(ctx.job.name, r.status, r);
        return { status: r.status, read: r.read, written: r.written, rejected: r.rejected };
      } catch (err) {
        const error = await fail(job, runId, err);
        if (metrics) {
          const name = (await context(runId).catch(() => undefined))?.job.name;
          if (name !== undefined) metrics.chunk(name, error instanceof UnrecoverableError ? 'failed' : 'retried');
        }
        throw error;
      }
    },
    { concurrency, lockSeconds: config.lockSeconds },
  );
  const finalizeWorker = backend.worker(
    FINALIZE_QUEUE,
    async (job: Job<FinalizeJobData>) => {
      const { runId } = job.data;
      try {
        log.debug({ runId, pid: process.pid }, 'finalize started');
        await finalizeRun(pool, runId, log);
        runs.delete(runId);
        return { published: runId };
      } catch (err) {
        throw await fail(job, runId, err);
      }
    },
    { concurrency: 1, lockSeconds: config.lockSeconds },
  );
  // Keys the API enqueued on a miss (serving.onMiss "enqueue"): small jobs, on the same threads.
  const lateWorker = startLateWorker(pool, backend, config, log, inference, concurrency, metrics);
  for (const w of [chunkWorker, finalizeWorker]) {
    w.on('error', (err) => log.warn({ err: errorMessage(err) }, 'queue worker error'));
  }

  const producer = backend.flowProducer();
  const finalizeQueue = backend.queue(FINALIZE_QUEUE);
  producer.on('error', (err) => log.warn({ err: errorMessage(err) }, 'queue producer error'));
  finalizeQueue.on('error', (err) => log.warn({ err: errorMessage(err) }, 'queue error'));
  const reconcile = async () => {
    try {
      const fixed = await reconcileRuns(pool, producer, finalizeQueue);
      if (fixed.length) log.warn({ runs: fixed }, 're-enqueued runs missing from the queue');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'reconcile failed');
    }
  };
  const timer = setInterval(() => void reconcile(), RECONCILE_MS);
  timer.unref();
  void reconcile();
  log.info({ pid: process.pid, concurrency, queue: backend.describe }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= (async () => {
        clearInterval(timer);
        // BullMQ's close waits for the jobs in flight to finish: nothing is left half done.
        await Promise.all([chunkWorker.close(), finalizeWorker.close(), lateWorker.close()]);
        await Promise.all([producer.close(), finalizeQueue.close()]);
        await inference.close();
        log.info({ pid: process.pid }, 'worker stopped');
      })()),
  };
}
