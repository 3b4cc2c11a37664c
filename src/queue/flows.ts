import type { FlowProducer, Queue } from 'bullmq';
import type { Pool } from '../db/pool.js';
import { undoneChunkNumbers } from '../db/sql/chunks.js';
import { activeQueueRuns, isActive, markEnqueued, markQueued } from '../db/sql/runs.js';
import { CHUNK_QUEUE, FINALIZE_QUEUE } from './connection.js';

export interface ChunkJobData {
  runId: string;
  chunkNo: number;
}

export interface FinalizeJobData {
  runId: string;
}

/** Deterministic job ids: adding a run's flow twice (two enqueuers, a reconciler) adds it once. */
export function finalizeJobId(runId: string, attempt: number): string {
  return `run-${runId}-a${attempt}-finalize`;
}

export function chunkJobId(runId: string, attempt: number, chunkNo: number): string {
  return `run-${runId}-a${attempt}-chunk-${chunkNo}`;
}

export const CHUNK_ATTEMPTS = 8;
export const FINALIZE_ATTEMPTS = 8;
const BACKOFF = { type: 'exponential', delay: 1000 } as const;
const KEEP = { removeOnComplete: { age: 7 * 86400, count: 100_000 }, removeOnFail: { age: 30 * 86400 } };

/**
 * Puts a run into the queue as a BullMQ flow: a finalize parent with one child per chunk not
 * yet done. A child that fails for good fails the parent, so the run fails and is not published.
 */
export async function enqueueRun(pool: Pool, producer: FlowProducer, runId: string): Promise<boolean> {
  const info = await markQueued(pool, runId);
  if (!info || !isActive(info.status)) return false;
  const chunks = await undoneChunkNumbers(pool, runId);
  await producer.add({
    name: 'finalize',
    queueName: FINALIZE_QUEUE,
    data: { runId } satisfies FinalizeJobData,
    opts: { jobId: finalizeJobId(runId, info.attempt), attempts: FINALIZE_ATTEMPTS, backoff: BACKOFF, ...KEEP },
    children: chunks.map((chunkNo) => ({
      name: 'chunk',
      queueName: CHUNK_QUEUE,
      data: { runId, chunkNo } satisfies ChunkJobData,
      opts: {
        jobId: chunkJobId(runId, info.attempt, chunkNo),
        attempts: CHUNK_ATTEMPTS,
        backoff: BACKOFF,
        failParentOnFailure: true,
        ...KEEP,
      },
    })),
  });
  await markEnqueued(pool, runId);
  return true;
}

/**
 * Re-enqueues queue runs that are active in the database but have no finalize job in the
 * queue: planned by a process that died before enqueueing, or lost with a Redis restart.
 * Done chunks are skipped, so this never duplicates work.
 */
export async function reconcileRuns(pool: Pool, producer: FlowProducer, finalizeQueue: Queue): Promise<string[]> {
  const fixed: string[] = [];
  for (const r of await activeQueueRuns(pool)) {
    const job = await finalizeQueue.getJob(finalizeJobId(r.id, r.attempt));
    if (job) continue;
    if (await enqueueRun(pool, producer, r.id)) fixed.push(r.id);
  }
  return fixed;
}
