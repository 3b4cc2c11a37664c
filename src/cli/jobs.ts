import path from 'node:path';
import type { Command } from 'commander';
import { InputError, errorMessage } from '../errors.js';
import { resolveJob } from '../definitions/check.js';
import { listJobFiles, loadJob, parseJobFile } from '../definitions/load.js';
import fs from 'node:fs';
import { resolveConfig } from '../config.js';
import { printJson, printTable, withContext } from './context.js';

export function jobsCommands(program: Command): void {
  const jobs = program.command('jobs').description('list and validate job files');
  jobs
    .command('list')
    .description('the jobs in PRESCORE_JOBS_DIR')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      // Reading job files needs no database.
      const config = resolveConfig();
      const rows = listJobFiles(config.jobsDir).map((file) => {
        try {
          const { spec } = parseJobFile(file, fs.readFileSync(file, 'utf8'));
          return {
            name: spec.name,
            model: spec.model,
            table: spec.source.table ?? '(query)',
            schedule: spec.schedule ?? null,
            valid: true,
            error: null,
          };
        } catch (err) {
          return {
            name: path.basename(file, '.json'),
            model: null,
            table: null,
            schedule: null,
            valid: false,
            error: errorMessage(err),
          };
        }
      });
      if (opts.json) return printJson(rows);
      printTable(
        ['JOB', 'MODEL', 'SOURCE', 'SCHEDULE'],
        rows.map((r) => [
          r.name,
          r.model ?? 'INVALID (prescore jobs validate)',
          r.table,
          r.schedule ? `${r.schedule.cron} ${r.schedule.timezone}` : null,
        ]),
      );
    });
  jobs
    .command('validate [name]')
    .description('check jobs against the live catalog and their models (all problems at once)')
    .action(async (name: string | undefined) => {
      await withContext(async ({ config, db }) => {
        const files = name ? [path.join(config.jobsDir, `${name}.json`)] : listJobFiles(config.jobsDir);
        if (files.length === 0) throw new InputError(`no job files in ${config.jobsDir}`);
        const failures: string[] = [];
        for (const file of files) {
          try {
            const job = name ? loadJob(config.jobsDir, name) : parseJobFile(file, fs.readFileSync(file, 'utf8'));
            const r = await resolveJob(db.pool, job, { checkData: true });
            process.stdout.write(
              `ok  ${r.name}: ${r.features.length} features from ${r.table ? `${r.table.schema}.${r.table.name}` : 'its query'} -> ${r.model.name} v${r.model.version}\n`,
            );
          } catch (err) {
            failures.push(errorMessage(err));
            process.stdout.write(`bad ${path.basename(file, '.json')}\n`);
          }
        }
        if (failures.length) throw new InputError(failures.join('\n'));
      });
    });
}
