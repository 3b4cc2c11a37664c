import fs from 'node:fs';
import path from 'node:path';
import type { Pool } from '../db/pool.js';
import { loadPointer } from '../db/sql/serving.js';
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
    let rows: number;
    if (p.format === 'csv') {
      rows = await exportCsv(pool, pointer.runId, partial);
    } else {
      rows = await exportParquet(pool, pointer.runId, partial, {
        'prescore.job': p.job,
        'prescore.date': p.date,
        'prescore.run': pointer.runId,
        'prescore.model': `${pointer.modelName}@${pointer.modelVersion}`,
      });
    }
    fs.renameSync(partial, file);
    return { runId: pointer.runId, rows, file };
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw err;
  }
}
