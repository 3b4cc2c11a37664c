import fs from 'node:fs';
import path from 'node:path';
import type { Pool } from '../db/pool.js';
import { runRef } from '../db/sql/layers.js';
import { runPlan } from '../db/sql/runs.js';
import { loadPointer } from '../db/sql/serving.js';
import type { ResolvedJob } from '../definitions/check.js';
import { checkDate } from '../dates.js';
import { InputError } from '../errors.js';
import { exportCsv } from './csv.js';
import { exportParquet } from './parquet.js';

export const EXPORT_FORMATS = ['csv', 'parquet'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportResult {
  runId: string;
  rows: number;
  file: string;
  /** What the file leaves out, for the operator: the challengers' rows of a run that scored some. */
  notes: string[];
}

/** An export (file or bundle) holds the champion's predictions only: says so for a run with challengers. */
export function championOnlyNote(job: Pick<ResolvedJob, 'name' | 'challengers' | 'spec'>, what: string): string[] {
  const challengers = job.challengers ?? [];
  if (challengers.length === 0) return [];
  return [
    `the run of job ${job.name} also scored ${challengers.map((c) => c.ref).join(', ')}: ${what} holds the champion's predictions only` +
      (job.spec.serving?.split ? ' (serving.split does not apply to it)' : '') +
      '; see prescore runs compare for the challengers',
  ];
}

/**
 * Writes the predictions that serve (job, date) to `file`: the published run, never one in
 * flight. The file appears whole or not at all (written beside it, then renamed).
 */
export async function exportPredictions(
  pool: Pool,
  p: { job: string; date: string; format: ExportFormat; file: string },
): Promise<ExportResult> {
  checkDate(p.date);
  const pointer = await loadPointer(pool, p.job, p.date);
  if (!pointer) {
    throw new InputError(
      `job ${p.job} has no published run for ${p.date}: nothing to export (see prescore runs list --job ${p.job})`,
    );
  }
  const file = path.resolve(p.file);
  const partial = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.partial`);
  try {
    const run = await runRef(pool, pointer.runId);
    let rows: number;
    if (p.format === 'csv') {
      rows = await exportCsv(pool, run, partial);
    } else {
      rows = await exportParquet(pool, run, partial, {
        'prescore.job': p.job,
        'prescore.date': p.date,
        'prescore.run': pointer.runId,
        'prescore.model': `${pointer.modelName}@${pointer.modelVersion}`,
      });
    }
    fs.renameSync(partial, file);
    const plan = await runPlan<ResolvedJob>(pool, pointer.runId);
    return { runId: pointer.runId, rows, file, notes: plan ? championOnlyNote(plan.spec, `the ${p.format} file`) : [] };
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw err;
  }
}
