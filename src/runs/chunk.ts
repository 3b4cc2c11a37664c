import type { RecordBatch } from 'apache-arrow';
import pg from 'pg';
import { BadRowError, InputError, RunError, errorMessage } from '../errors.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { resolveJob, type ResolvedJob } from '../definitions/check.js';
import { PG, pgCode } from '../db/codes.js';
import { DEFAULT_CHUNK_TIMEOUT_SECONDS } from '../definitions/schema.js';
import type { InferencePool } from '../inference/pool.js';
import type { InferResult } from '../inference/protocol.js';
import { mappedOutputs } from '../models/output.js';
import { changedKeysFilter } from '../db/sql/carry.js';
import { lockChunk, markChunkDone, recordChunkError } from '../db/sql/chunks.js';
import { quoteIdent } from '../db/ident.js';
import { insertChallengerRejects, insertRejects } from '../db/sql/rejects.js';
import { addRunModelCounts } from '../db/sql/run-models.js';
import { encodeProfiles } from '../profile/codec.js';
import { ChunkProfiler } from '../profile/profile.js';
import { ChallengerWriter, type ChallengerReject } from '../sink/challengers.js';
import { PredictionWriter } from '../sink/writer.js';
import { featureValues, keyColumn, textColumns } from '../source/arrow.js';
import type { FeatureStats, Reject } from '../source/decode.js';
import { readChunk } from '../source/reader.js';

export interface ChunkTask {
  runId: string;
  date: string;
  job: ResolvedJob;
  /** The model bytes (shared memory) for the inference threads. */
  model: Uint8Array;
  /** The challengers' bytes, in the order of job.challengers. */
  challengers?: Uint8Array[];
  chunkNo: number;
  lo: string | null;
  hi: string | null;
}

/** Where a chunk's time went (ms). Stages overlap, so they add up to more than the wall time. */
export interface StageTimings {
  read: number;
  inferWait: number;
  write: number;
  commit: number;
}

export interface ChunkResult {
  /** skipped: already done (a retry or duplicate delivery); inactive: the run was cancelled or failed. */
  status: 'done' | 'skipped' | 'inactive';
  read: number;
  written: number;
  rejected: number;
  timings: StageTimings;
  /** Inference time per model (ms in its thread), by slot: [champion, challenger 1, ...]. */
  inferMs: number[];
}

export function describeRange(lo: string | null, hi: string | null): string {
  return `[${lo ?? '-inf'}, ${hi ?? '+inf'})`;
}

/**
 * Scores one key range: binary COPY out -> record batches -> inference threads -> binary
 * COPY into the run's table, then the chunk's done-marker, all in ONE transaction. A chunk
 * already done (a retry after a crash, a duplicate delivery) is skipped, so each source row
 * is written exactly once. Batches are pipelined: batch k+1 is decoded while k is scored.
 * Challengers: each batch, read and decoded once, goes to the champion and every challenger
 * at once; their rows are loaded into the run's challenger table in the same transaction.
 */
export async function executeChunk(
  pool: Pool,
  inference: InferencePool,
  task: ChunkTask,
  onRows: (read: number) => void = () => undefined,
): Promise<ChunkResult> {
  const { job } = task;
  const writer = await pool.connect();
  let reader: PoolClient | undefined;
  let sink: PredictionWriter | undefined;
  let broken: Error | undefined;
  const timings: StageTimings = { read: 0, inferWait: 0, write: 0, commit: 0 };
  const challengers = job.challengers ?? [];
  const inferMs = [0, ...challengers.map(() => 0)];
  let extra: ChallengerWriter | undefined;
  const timeoutSeconds = job.spec.chunkTimeoutSeconds ?? DEFAULT_CHUNK_TIMEOUT_SECONDS;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ChunkTimeout(`not done after ${timeoutSeconds} s (chunkTimeoutSeconds); abandoned, to be retried`)),
      timeoutSeconds * 1000,
    );
  });
  const work = async (): Promise<ChunkResult> => {
    await writer.query('BEGIN');
    // The chunk row lock serialises duplicate deliveries: the second waits, then sees 'done'.
    const lock = await lockChunk(writer, task.runId, task.chunkNo);
    if (!lock) throw new InputError(`run ${task.runId} has no chunk ${task.chunkNo}`);
    if (lock.done || lock.runStatus !== 'running') {
      await writer.query('ROLLBACK');
      return { status: lock.done ? 'skipped' : 'inactive', read: 0, written: 0, rejected: 0, timings, inferMs };
    }
    sink = new PredictionWriter(writer, task.runId, job.mapping);
    reader = await pool.connect();
    const stats: { value: FeatureStats[] | null } = { value: null };
    const rejects: Reject[] = [];
    const challengerRejects: ChallengerReject[] = [];
    extra =
      challengers.length > 0
        ? new ChallengerWriter(
            task.runId,
            challengers.map((c) => c.slot),
          )
        : undefined;
    let read = 0;
    let featureRejects = 0;
    // The same for every batch: the numeric features (the tensor's width) and each model's outputs.
    const numeric = job.features.filter((f) => f.wire !== 'text');
    const outputs = mappedOutputs(job.mapping);
    const challengerOutputs = challengers.map((c) => mappedOutputs(c.mapping));
    // Drift profiles in the same pass: every scored row's features and stored outputs.
    const profiler =
      job.spec.monitor?.profile === false
        ? null
        : new ChunkProfiler(
            numeric.map((f) => f.name),
            job.mapping,
          );

    type Timed = Promise<{ result: InferResult; ms: number }>;
    interface Pending {
      champion: Timed;
      challengers: Timed[];
    }
    const score = (batch: RecordBatch): Pending | null => {
      if (batch.numRows === 0) return null;
      const features = featureValues(batch);
      const common = {
        rows: batch.numRows,
        width: numeric.length,
        ...(job.feeds ? { feeds: job.feeds, text: textColumns(batch) } : {}),
      };
      // Challengers get copies: the champion's task takes the batch's own buffer (transferred).
      const others = challengers.map((c, i) =>
        inference.runTimed({
          ...common,
          sha256: c.model.sha256,
          model: task.challengers![i]!,
          inputName: c.input.name,
          inputType: c.input.type,
          fixedBatch: c.input.batch,
          features: features.slice(),
          outputs: challengerOutputs[i]!,
        }),
      );
      const champion = inference.runTimed({
        ...common,
        sha256: job.model.sha256,
        model: task.model,
        inputName: job.input.name,
        inputType: job.input.type,
        fixedBatch: job.input.batch,
        features,
        outputs,
      });
      for (const p of [champion, ...others]) p.catch(() => undefined); // awaited in write(); no unhandled rejection meanwhile
      return { champion, challengers: others };
    };
    const copyIn = sink;
    const scored = async (batch: RecordBatch, pending: Timed, who: string): Promise<{ result: InferResult; ms: number }> => {
      try {
        return await pending;
      } catch (err) {
        // The same model on the same rows fails the same way: retrying cannot help.
        const first = keyColumn(batch);
        const key = Buffer.from(first.data.subarray(first.offsets[0], first.offsets[1])).toString('utf8');
        throw new InputError(`${who} failed on the batch starting at key ${key}: ${errorMessage(err).split('\n')[0]}`, {
          cause: err,
        });
      }
    };
    const write = async (batch: RecordBatch, pending: Pending | null): Promise<void> => {
      if (!pending) return;
      let t = performance.now();
      const champion = await scored(batch, pending.champion, 'the model');
      const others: { result: InferResult; ms: number }[] = [];
      for (const [i, c] of challengers.entries()) {
        others.push(
          await scored(
            batch,
            pending.challengers[i]!,
            `challenger ${c.model.name} v${c.model.version} (challengers[${c.slot - 1}])`,
          ),
        );
      }
      timings.inferWait += performance.now() - t;
      t = performance.now();
      const result = champion.result;
      inferMs[0]! += champion.ms;
      profiler?.addOutputs(result, batch.numRows);
      const keys = keyColumn(batch);
      rejects.push(...(await copyIn.write(keys, batch.numRows, result)));
      for (const [i, c] of challengers.entries()) {
        inferMs[i + 1]! += others[i]!.ms;
        challengerRejects.push(...extra!.add(c.slot, c.mapping, keys, batch.numRows, others[i]!.result));
      }
      timings.write += performance.now() - t;
    };

    let previous: { batch: RecordBatch; pending: Pending | null } | null = null;
    try {
      const only = job.changedKeys && changedKeysFilter(quoteIdent(job.key.name), task.runId, job.changedKeys.nullKeys);
      const source = readChunk(reader, job, task.date, task.lo, task.hi, stats, only || undefined);
      for (;;) {
        const t = performance.now();
        const next = await source.next();
        timings.read += performance.now() - t;
        if (next.done) break;
        const item = next.value;
        read += item.read;
        rejects.push(...item.rejects);
        featureRejects += item.rejects.length;
        profiler?.addFeatures(featureValues(item.batch), item.batch.numRows);
        const pending = score(item.batch);
        if (previous) await write(previous.batch, previous.pending);
        previous = { batch: item.batch, pending };
        onRows(item.read);
      }
      if (previous) await write(previous.batch, previous.pending);
    } catch (err) {
      broken = err as Error;
      throw err;
    }
    const commitStart = performance.now();
    await sink.finish();
    const written = sink.written;
    const writeStart = performance.now();
    await extra?.flush(writer);
    timings.write += performance.now() - writeStart;
    await insertRejects(writer, task.runId, rejects);
    await insertChallengerRejects(writer, task.runId, challengerRejects);
    const profile = profiler ? encodeProfiles(profiler.finish(stats.value)) : null;
    await markChunkDone(writer, task.runId, task.chunkNo, { read, written, rejected: rejects.length }, profile);
    // Slot 0's own rejects are the champion's non-finite outputs: bad features count for every slot.
    await addRunModelCounts(writer, task.runId, [
      { slot: 0, written, rejected: rejects.length - featureRejects },
      ...challengers.map((c) => ({
        slot: c.slot,
        written: extra!.written.get(c.slot) ?? 0,
        rejected: challengerRejects.filter((r) => r.slot === c.slot).length,
      })),
    ]);
    await writer.query('COMMIT');
    timings.commit = performance.now() - commitStart;
    return { status: 'done', read, written, rejected: rejects.length, timings, inferMs };
  };
  const running = work();
  try {
    return await Promise.race([running, deadline]);
  } catch (err) {
    broken ??= err as Error;
    if (err instanceof ChunkTimeout) {
      // Whatever hangs (a query, a COPY waiting on a lock or on us, the socket itself): both
      // backends are terminated (a COPY waiting for input ignores a cancel), so the attempt's
      // writes roll back, never commit, and its chunk lock is released for the retry.
      running.catch(() => undefined);
      await terminateBackends(pool, [writer, reader]);
    } else {
      await sink?.abort(broken);
      await extra?.abort(broken);
      await writer.query('ROLLBACK').catch(() => undefined);
    }
    const range = describeRange(task.lo, task.hi);
    // The source changed under the run (a column renamed or retyped, a table dropped, a grant
    // revoked): no retry fixes that. Say it as `jobs validate` would, checking the job again.
    const changed = isSchemaError(err) ? await revalidate(pool, job) : null;
    const cause =
      err instanceof BadRowError
        ? `key ${err.key ?? 'NULL'}: ${err.reason} (onBadRow is "fail"; set it to "reject" to skip such rows)`
        : (changed ?? errorMessage(err));
    await recordChunkError(pool, task.runId, task.chunkNo, cause).catch(() => undefined);
    const ErrorClass = err instanceof BadRowError || err instanceof InputError || changed !== null ? InputError : RunError;
    const message = `job ${job.name} ${task.date}: chunk ${task.chunkNo} (keys ${range}) of run ${task.runId} failed: ${cause}`;
    throw ErrorClass === InputError ? new InputError(message, { cause: err }) : new RunError(task.runId, message, { cause: err });
  } finally {
    clearTimeout(timer);
    // A client left mid-COPY is destroyed, not returned to the pool.
    writer.release(broken);
    reader?.release(broken);
  }
}

/** PostgreSQL errors that mean the source itself changed: permanent, not worth a retry. */
const SCHEMA_ERRORS = new Set<string>([
  PG.undefinedTable,
  PG.undefinedColumn,
  PG.insufficientPrivilege,
  PG.datatypeMismatch,
  PG.cannotCoerce,
]);

function isSchemaError(err: unknown): boolean {
  const code = pgCode(err);
  return code !== undefined && SCHEMA_ERRORS.has(code);
}

/** The job checked against the catalog again: the problems `jobs validate` would list, or the plain cause. */
async function revalidate(pool: Pool, job: ResolvedJob): Promise<string> {
  try {
    await resolveJob(pool, { file: job.file, spec: job.spec });
    return 'the source changed while the run was scored (run prescore jobs validate)';
  } catch (err) {
    return errorMessage(err).replace(/\n\s*-\s*/g, '; ');
  }
}

/** A chunk that ran past chunkTimeoutSeconds: transient, so the queue retries it. */
class ChunkTimeout extends Error {}

/** Ends these connections' backends, from a connection of its own (the pool may be full). */
async function terminateBackends(pool: Pool, clients: (PoolClient | undefined)[]): Promise<void> {
  const pids = clients.map((c) => (c as { processID?: number } | undefined)?.processID).filter((p) => typeof p === 'number');
  if (pids.length === 0) return;
  const admin = new pg.Client({ ...(pool.options as pg.ClientConfig), connectionTimeoutMillis: 5000 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
    await admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  } catch {
    // Destroying the connections still ends their backends once they next read from them.
  } finally {
    await admin.end().catch(() => undefined);
  }
}
