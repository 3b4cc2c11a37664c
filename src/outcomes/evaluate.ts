import fs from 'node:fs';
import path from 'node:path';
import { withReadOnly, type Pool } from '../db/pool.js';
import {
  CALIBRATION_BINS,
  duplicateOutcomeStatement,
  evaluationStatement,
  servedRunsBetween,
  type GroupRow,
} from '../db/sql/evaluation.js';
import { loadJob } from '../definitions/load.js';
import type { JobSpec } from '../definitions/schema.js';
import { InputError } from '../errors.js';
import { PG, pgCode } from '../db/codes.js';
import { sourceStatement } from '../source/statement.js';
import { modelKind, type ModelKind } from './kind.js';
import { outcomesColumns } from './source.js';

export interface CalibrationBin {
  /** [lower, upper): the last bin includes 1. */
  lower: number;
  upper: number;
  count: number;
  meanPredicted: number | null;
  observedRate: number | null;
}

export interface EvaluationRow {
  model: { name: string; version: number };
  /** null: the whole range (the overall row of this model version). */
  date: string | null;
  matched: number;
  /** Classifiers. */
  positives?: number;
  auc?: number | null;
  logLoss?: number | null;
  accuracy?: number | null;
  calibration?: CalibrationBin[];
  /** Regressors. */
  rmse?: number | null;
  mae?: number | null;
  meanPredicted?: number | null;
  meanOutcome?: number | null;
}

export interface Evaluation {
  job: string;
  from: string;
  to: string;
  kind: ModelKind;
  /** The run serving each date of the range (dates without one have no predictions to evaluate). */
  runs: { date: string; runId: string; model: { name: string; version: number } }[];
  rows: EvaluationRow[];
}

/** The widest range one evaluation reads: a year of dates (a leap year's included). */
export const MAX_EVALUATION_DAYS = 366;

/** Why [from, to] cannot be evaluated in one go (`flag`: how the caller names the dates), or null. */
export function evaluationRangeProblem(from: string, to: string, flag: (name: 'from' | 'to') => string): string | null {
  if (from > to) return `${flag('from')} ${from} is after ${flag('to')} ${to}: give the earlier date first`;
  const days = Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000) + 1;
  if (days > MAX_EVALUATION_DAYS) {
    return `${flag('from')} ${from} to ${flag('to')} ${to} is ${days} dates; evaluate at most ${MAX_EVALUATION_DAYS} at a time`;
  }
  return null;
}

/** Both dates checked by the caller; a range evaluationRangeProblem refuses is refused here too. */
export async function evaluate(
  pool: Pool,
  job: { name: string; spec: JobSpec },
  range: { from: string; to: string },
  options: { timeoutMs?: number } = {},
): Promise<Evaluation> {
  const { from, to } = range;
  const problem = evaluationRangeProblem(from, to, (name) => `--${name}`);
  if (problem) throw new InputError(problem);
  const columns = await outcomesColumns(pool, job.name, job.spec);
  const source = { ...columns, timeZone: job.spec.schedule?.timezone ?? 'UTC' };
  const runs = await servedRunsBetween(pool, job.name, from, to);
  const kind = modelKind(runs.at(-1)?.spec as Parameters<typeof modelKind>[0], job.spec.outcomes?.kind);
  const groups = await withReadOnly(pool, async (client) => {
    if (options.timeoutMs) await client.query(`SET LOCAL statement_timeout = ${Math.floor(options.timeoutMs)}`);
    const dup = await client.query<{ key: string; date: string }>(
      sourceStatement(...spread(duplicateOutcomeStatement(job.name, from, to, source))),
    );
    if (dup.rows[0]) {
      throw new InputError(
        `job ${job.name}: outcomes hold key ${dup.rows[0].key} twice on ${dup.rows[0].date}; give one outcome per key and date ` +
          `(outcomes.${job.spec.outcomes!.table !== undefined ? 'table' : 'query'})`,
      );
    }
    const res = await client.query<GroupRow>(sourceStatement(...spread(evaluationStatement(job.name, from, to, source))));
    return res.rows;
  }).catch((err: unknown) => {
    // The outcomes query tried to write (a function with side effects): the read-only transaction refused it.
    if (pgCode(err) === PG.readOnlyTransaction) {
      throw new InputError(`job ${job.name}: outcomes.query must only read (it runs read-only): ${(err as Error).message}`);
    }
    throw err;
  });
  if (kind === 'classifier') {
    const bad = groups.find((g) => Number(g.non_binary) > 0);
    if (bad) {
      throw new InputError(
        `job ${job.name} is a classifier, so outcomes.outcome must be 0/1 or boolean; key ${bad.non_binary_example} has another value ` +
          `(or set "outcomes": {"kind": "regressor"} if the score is not a probability)`,
      );
    }
  }
  return {
    job: job.name,
    from,
    to,
    kind,
    runs: runs.map((r) => ({ date: r.date, runId: r.runId, model: { name: r.modelName, version: r.modelVersion } })),
    rows: groups.map((g) => toRow(g, kind)),
  };
}

function spread(s: { text: string; values: unknown[] }): [string, unknown[]] {
  return [s.text, s.values];
}

function toRow(g: GroupRow, kind: ModelKind): EvaluationRow {
  const base = { model: { name: g.model_name, version: g.model_version }, date: g.date, matched: Number(g.matched) };
  if (kind === 'regressor') {
    return { ...base, rmse: g.rmse, mae: g.mae, meanPredicted: g.mean_score, meanOutcome: g.mean_outcome };
  }
  const bins = new Map((g.bins ?? []).map((b) => [b.bin, b]));
  return {
    ...base,
    positives: g.positives,
    auc: g.auc,
    logLoss: g.log_loss,
    accuracy: g.accuracy,
    calibration: Array.from({ length: CALIBRATION_BINS }, (_, i) => {
      const b = bins.get(i);
      return {
        lower: i / CALIBRATION_BINS,
        upper: (i + 1) / CALIBRATION_BINS,
        count: b?.count ?? 0,
        meanPredicted: b?.meanPredicted ?? null,
        observedRate: b?.observedRate ?? null,
      };
    }),
  };
}

/**
 * What `prescore serve` gives the API for `GET /v1/jobs/:job/evaluation`: the job file read
 * afresh on each call (as `prescore evaluate` reads it, so both answer the same JSON), undefined
 * when there is no such job file. Bounded by a statement timeout.
 */
export function evaluationProvider(
  pool: Pool,
  jobsDir: string,
  timeoutMs = 30_000,
): (job: string, range: { from: string; to: string }) => Promise<Evaluation | undefined> {
  return async (name, range) => {
    if (!fs.existsSync(path.join(jobsDir, `${name}.json`))) return undefined;
    const job = loadJob(jobsDir, name);
    return evaluate(pool, { name, spec: job.spec }, range, { timeoutMs });
  };
}
