import path from 'node:path';
import type { Command } from 'commander';
import { InputError, ValidationError, errorMessage } from '../errors.js';
import type { ResolvedJob } from '../definitions/check.js';
import type { JobFile } from '../definitions/load.js';
import type { Pool } from '../db/pool.js';
import fs from 'node:fs';
import { localTime } from '../dates.js';
import { scheduleStates, setPaused } from '../db/sql/schedules.js';
import { newestPublishedDates } from '../db/sql/serving.js';
import { printJson, printTable, withContext } from './context.js';

export function jobsCommands(program: Command): void {
  const jobs = program.command('jobs').description('list, validate, pause and resume jobs');
  jobs
    .command('list')
    .description('the jobs in PRESCORE_JOBS_DIR: schedule, next fire, paused, newest published date')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const { listJobFiles, parseJobFile } = await import('../definitions/load.js');
      const { nextFire } = await import('../scheduler/calendar.js');
      await withContext(async ({ config, db }) => {
        const now = new Date();
        const files = listJobFiles(config.jobsDir).map((file) => {
          try {
            return { file, spec: parseJobFile(file, fs.readFileSync(file, 'utf8')).spec, error: null };
          } catch (err) {
            return { file, spec: null, error: errorMessage(err) };
          }
        });
        const names = files.map((f) => f.spec?.name ?? path.basename(f.file, '.json'));
        const [states, newest] = await Promise.all([scheduleStates(db.pool, names), newestPublishedDates(db.pool, names)]);
        const rows = files.map(({ spec, error }, i) => {
          const name = names[i]!;
          const next = spec?.schedule ? nextFire(spec.schedule, now) : null;
          return {
            name,
            model: spec?.model ?? null,
            table: spec ? (spec.source.table ?? '(query)') : null,
            schedule: spec?.schedule ?? null,
            nextFire: next && {
              at: next.at.toISOString(),
              local: localTime(next.at, spec!.schedule!.timezone),
              date: next.date,
            },
            paused: states.get(name)?.paused ?? false,
            newestPublished: newest.get(name) ?? null,
            valid: spec !== null,
            error,
          };
        });
        if (opts.json) return printJson(rows);
        printTable(
          ['JOB', 'MODEL', 'SOURCE', 'SCHEDULE', 'NEXT FIRE', 'PAUSED', 'NEWEST PUBLISHED'],
          rows.map((r) => [
            r.name,
            r.model ?? 'INVALID (prescore jobs validate)',
            r.table,
            r.schedule ? `${r.schedule.cron} ${r.schedule.timezone}` : null,
            r.nextFire ? `${r.nextFire.local} (scores ${r.nextFire.date})` : null,
            r.schedule ? (r.paused ? 'yes' : 'no') : null,
            r.newestPublished,
          ]),
        );
      });
    });
  for (const paused of [true, false]) {
    jobs
      .command(`${paused ? 'pause' : 'resume'} <job>`)
      .description(
        paused
          ? 'stop the schedulers firing a job (runs in flight go on; run and backfill still work)'
          : 'let the schedulers fire a paused job again (the paused dates are back-filled only with schedule.catchUp: true)',
      )
      .action(async (name: string) => {
        const { loadJob } = await import('../definitions/load.js');
        const { nextFire } = await import('../scheduler/calendar.js');
        await withContext(async ({ config, db }) => {
          const { spec } = loadJob(config.jobsDir, name);
          if (!spec.schedule)
            throw new InputError(`job ${name} has no schedule: there is nothing to ${paused ? 'pause' : 'resume'}`);
          const was = await setPaused(db.pool, name, paused);
          const next = nextFire(spec.schedule, new Date());
          const when = next ? `${localTime(next.at, spec.schedule.timezone)} (scores ${next.date})` : 'never';
          if (paused)
            process.stdout.write(
              was
                ? `job ${name} was already paused\n`
                : `job ${name} paused: the schedulers skip its fires until prescore jobs resume ${name}\n`,
            );
          else
            process.stdout.write(
              was
                ? `job ${name} resumed; next fire ${when}${spec.schedule.catchUp === true ? '; the paused dates are caught up' : ''}\n`
                : `job ${name} was not paused; next fire ${when}\n`,
            );
        });
      });
  }
  jobs
    .command('validate [name]')
    .description('check jobs against the live catalog and their models (all problems at once)')
    .action(async (name: string | undefined) => {
      const { listJobFiles, loadJob, parseJobFile } = await import('../definitions/load.js');
      const { resolveJob } = await import('../definitions/check.js');
      await withContext(async ({ config, db }) => {
        const files = name ? [path.join(config.jobsDir, `${name}.json`)] : listJobFiles(config.jobsDir);
        if (files.length === 0) throw new InputError(`no job files in ${config.jobsDir}`);
        const failures: string[] = [];
        for (const file of files) {
          try {
            const job = name ? loadJob(config.jobsDir, name) : parseJobFile(file, fs.readFileSync(file, 'utf8'));
            const r = await withOutcomes(db.pool, job, () => resolveJob(db.pool, job, { checkData: true }));
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

/**
 * Resolves a job and checks its `outcomes` source too, reporting the problems of both at once
 * (the outcomes key must have the type of the source key, when the source resolves).
 */
async function withOutcomes(pool: Pool, job: JobFile, resolve: () => Promise<ResolvedJob>): Promise<ResolvedJob> {
  let resolved: ResolvedJob | undefined;
  let problems: string[] = [];
  const { checkOutcomes } = await import('../outcomes/source.js');
  try {
    resolved = await resolve();
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems = err.problems;
  }
  const outcomes = await checkOutcomes(pool, job.spec, resolved?.key.pgType);
  problems.push(...outcomes.problems);
  if (problems.length > 0 || !resolved) throw new ValidationError(`job ${job.spec.name} (${job.file})`, problems);
  return resolved;
}
