import path from 'node:path';
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { newestPublishedDates } from '../db/sql/serving.js';
import { InputError } from '../errors.js';
import type { ExportFormat } from '../export/export.js';
import { formatCount, printJson, withContext } from './context.js';

type Format = ExportFormat | 'bundle';
// Every format, checked against ExportFormat by the type: the help lists them with no writer loaded.
const FORMATS = Object.keys({ csv: true, parquet: true, bundle: true } satisfies Record<Format, true>) as Format[];

/** Without --format: FILE.csv, FILE.parquet, or a directory (no extension, or one that exists) for a bundle; else CSV. */
function formatOf(out: string): Format {
  const ext = path.extname(out).toLowerCase();
  if (ext === '.parquet') return 'parquet';
  if (ext === '.csv') return 'csv';
  if (ext === '' || out.endsWith('/') || (fs.existsSync(out) && fs.statSync(out).isDirectory())) return 'bundle';
  return 'csv';
}

export function exportCommand(program: Command): void {
  program
    .command('export <job>')
    .description(
      "write a published date's predictions to a CSV or Parquet file (streamed: any size), or a bundle directory " +
        '(predictions.arrow, rejects.arrow, model.onnx, manifest.json) that prescore serve --bundle and openBundle() read with no database',
    )
    .option('--date <date>', "the published date YYYY-MM-DD (default: the job's newest)")
    .addOption(
      new Option('--format <format>', 'csv, parquet or bundle (default: from --out; a directory is a bundle)').choices(FORMATS),
    )
    .requiredOption('--out <path>', 'the file or bundle directory to write (replaced whole once complete)')
    .option('--json', 'print {job, date, runId, rows, file} ({..., dir, rejected, manifestSha256} for a bundle)')
    .action(async (job: string, opts: { date?: string; format?: Format; out: string; json?: boolean }) => {
      const format = opts.format ?? formatOf(opts.out);
      await withContext(async ({ db }) => {
        if (format === 'bundle') {
          const { exportBundle } = await import('../bundle/write.js');
          const r = await exportBundle(db.pool, { job, date: opts.date, dir: opts.out });
          for (const note of r.notes) process.stderr.write(`note: ${note}\n`);
          if (opts.json) return printJson({ job, ...r });
          process.stdout.write(
            `exported ${formatCount(r.rows)} predictions and ${formatCount(r.rejected)} rejects of ${job} ${r.date} (run ${r.runId}) ` +
              `as a bundle to ${r.dir}\nmanifest.json sha256 ${r.manifestSha256}\n`,
          );
          return;
        }
        let date = opts.date;
        if (date === undefined) {
          date = (await newestPublishedDates(db.pool, [job])).get(job);
          if (!date)
            throw new InputError(`job ${job} has no published run: nothing to export (see prescore runs list --job ${job})`);
        }
        const { exportPredictions } = await import('../export/export.js');
        const r = await exportPredictions(db.pool, { job, date, format, file: opts.out });
        for (const note of r.notes) process.stderr.write(`note: ${note}\n`);
        if (opts.json) return printJson({ job, date, ...r });
        process.stdout.write(`exported ${formatCount(r.rows)} predictions of ${job} ${date} (run ${r.runId}) to ${r.file}\n`);
      });
    });
}
