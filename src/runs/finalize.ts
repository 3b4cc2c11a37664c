import { withTransaction, type Pool } from '../db/pool.js';
import { chunkTotals } from '../db/sql/chunks.js';
import {
  analyzePartition,
  countChallengerPartition,
  countPartition,
  duplicateKey,
  indexPartition,
  isDuplicateKey,
} from '../db/sql/partitions.js';
import { listRunModels } from '../db/sql/run-models.js';
import { sampleRejects } from '../db/sql/rejects.js';
import { markFinalizing, markHeld, runForFinalize } from '../db/sql/runs.js';
import type { Gates } from '../profile/gates.js';
import type { ColumnProfile } from '../profile/profile.js';
import { featureSummaries, gateRun } from './gate.js';
import { InputError, RunError } from '../errors.js';
import type { Logger } from '../log.js';
import { publishRun } from '../sink/publish.js';
import { dropExpired, dropOldDates } from '../sink/retention.js';

interface FinalizeSpec {
  spec: { maxRejectRate: number; keepRuns: number; retainDays?: number; monitor?: { baseline: string }; gates?: Gates };
}

/**
 * Finalizes a run whose chunks are all done: checks every row is accounted for
 * (read = written + rejected, and the table holds exactly `written` rows), enforces the
 * reject rate, indexes the run's table and merges its feature statistics, then publishes it
 * (sink/publish: one transaction) and applies retention (sink/retention).
 *
 * Idempotent: a finalize that died midway is run again from the top; one that loses a race
 * with another finalize of the same run returns quietly.
 */
export async function finalizeRun(pool: Pool, runId: string, log: Logger): Promise<void> {
  const info = await runForFinalize<FinalizeSpec>(pool, runId);
  if (!info) throw new RunError(runId, `run ${runId} does not exist`);
  // Done already: published by a racing finalize, or held for a person to review; or ended
  // (cancelled, failed, rejected) while its finalize job waited: nothing to publish, nothing to retry.
  if (info.status !== 'running' && info.status !== 'finalizing') {
    log.debug({ runId, status: info.status }, 'finalize skipped: the run has ended');
    return;
  }
  if (info.status !== 'running' && info.status !== 'finalizing') {
    throw new RunError(runId, `run ${runId} is ${info.status}; only a running run can be published`);
  }
  const where = `job ${info.job} ${info.date}: run ${runId}`;
  const t = await chunkTotals(pool, runId);
  if (t.done !== t.chunks) throw new RunError(runId, `${where}: ${t.chunks - t.done} of ${t.chunks} chunks are not done`);
  await markFinalizing(pool, runId);
  if (t.read !== t.written + t.rejected) {
    throw new RunError(runId, `${where}: rows do not add up: read ${t.read} != written ${t.written} + rejected ${t.rejected}`);
  }
  const { maxRejectRate, keepRuns, retainDays } = info.spec.spec;
  const rate = t.read === 0 ? 0 : t.rejected / t.read;
  if (rate > maxRejectRate) {
    const examples = (await sampleRejects(pool, runId)).map((r) => `${r.key ?? 'NULL'}: ${r.reason}`).join('; ');
    throw new InputError(
      `${where}: ${t.rejected} of ${t.read} rows rejected (${(rate * 100).toFixed(2)}%), above maxRejectRate ${maxRejectRate}; e.g. ${examples}`,
    );
  }
  try {
    await withTransaction(pool, (client) => indexPartition(client, runId));
  } catch (err) {
    if (isDuplicateKey(err, runId)) {
      const key = await duplicateKey(pool, runId);
      throw new InputError(
        `${where}: key ${key ?? '?'} appears more than once on ${info.date}; the source key must be unique per date`,
        { cause: err },
      );
    }
    throw err;
  }
  await analyzePartition(pool, runId);
  // The table must hold exactly what the chunks say they wrote (a cheap index-only count); a
  // layer, all but those it reads through to its base.
  const stored = (await countPartition(pool, runId)) + info.readThrough;
  if (stored !== t.written) {
    throw new RunError(runId, `${where}: the run's table holds ${stored} rows but its chunks wrote ${t.written}`);
  }
  await checkChallengerCounts(pool, runId, where, t);
  const gate = await gateRun(
    pool,
    {
      id: runId,
      job: info.job,
      rowsRead: t.read,
      baseline: info.spec.spec.monitor?.baseline ?? 'previous',
      gates: info.spec.spec.gates,
    },
    log,
  );
  if (gate.held !== null) {
    await markHeld(pool, runId, gate.held);
    log.warn({ runId, job: info.job, date: info.date, gates: gate.held }, 'held: a quality gate blocks publishing');
    return;
  }
  await publish(pool, log, { runId, job: info.job, date: info.date, totals: t, profiles: gate.profiles, keepRuns, retainDays });
}

/** Publishes a run that passed its checks (or was approved), then applies retention. */
export async function publish(
  pool: Pool,
  log: Logger,
  p: {
    runId: string;
    job: string;
    date: string;
    totals: { read: number; written: number; rejected: number };
    profiles: ColumnProfile[];
    keepRuns: number;
    retainDays?: number;
  },
): Promise<void> {
  const previous = await publishRun(pool, {
    runId: p.runId,
    job: p.job,
    date: p.date,
    totals: { read: p.totals.read, written: p.totals.written, rejected: p.totals.rejected },
    features: featureSummaries(p.profiles),
  });
  if (previous === 'already') return;
  log.info({ runId: p.runId, job: p.job, date: p.date, previous }, 'published');
  await dropExpired(pool, p.job, p.date, p.keepRuns, log);
  if (p.retainDays !== undefined) await dropOldDates(pool, p.job, p.retainDays, log);
}

/**
 * Every model of the run accounts for every row: per slot, written + its own rejects + the
 * rows no model could score (bad features) = read, and the challenger table holds exactly what
 * each challenger's chunks wrote. Champion and challenger rows are published together, so a
 * challenger that lost rows stops the publish of all.
 */
async function checkChallengerCounts(
  pool: Pool,
  runId: string,
  where: string,
  t: { read: number; written: number; rejected: number },
): Promise<void> {
  const models = await listRunModels(pool, runId);
  if (models.length < 2) return;
  const featureRejected = t.rejected - models[0]!.rowsRejected;
  const stored = await countChallengerPartition(pool, runId);
  for (const m of models) {
    const what = m.slot === 0 ? `champion ${m.name} v${m.version}` : `challenger ${m.name} v${m.version} (slot ${m.slot})`;
    if (m.rowsWritten + m.rowsRejected + featureRejected !== t.read) {
      throw new RunError(
        runId,
        `${where}: rows do not add up for ${what}: read ${t.read} != written ${m.rowsWritten} + rejected ${m.rowsRejected} + bad rows ${featureRejected}`,
      );
    }
    if (m.slot > 0 && (stored.get(m.slot) ?? 0) !== m.rowsWritten) {
      throw new RunError(
        runId,
        `${where}: the challenger table holds ${stored.get(m.slot) ?? 0} rows of ${what} but its chunks wrote ${m.rowsWritten}`,
      );
    }
  }
}
