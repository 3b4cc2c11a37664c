import { Option, type Command } from 'commander';
import { EXPORT_FORMATS, exportPredictions, type ExportFormat } from '../export/export.js';
import { formatCount, printJson, withContext } from './context.js';

export function exportCommand(program: Command): void {
  program
    .command('export <job>')
    .description("write a published date's predictions to a CSV or Parquet file (streamed: any size)")
    .requiredOption('--date <date>', 'the published date YYYY-MM-DD')
    .addOption(new Option('--format <format>', 'file format').choices(EXPORT_FORMATS).default('csv'))
    .requiredOption('--out <file>', 'where to write it (replaced whole once complete)')
    .option('--json', 'print {job, date, runId, rows, file}')
    .action(async (job: string, opts: { date: string; format: ExportFormat; out: string; json?: boolean }) => {
      await withContext(async ({ db }) => {
        const r = await exportPredictions(db.pool, { job, date: opts.date, format: opts.format, file: opts.out });
        if (opts.json) return printJson({ job, date: opts.date, ...r });
        process.stdout.write(
          `exported ${formatCount(r.rows)} predictions of ${job} ${opts.date} (run ${r.runId}) to ${r.file}\n`,
        );
      });
    });
}
