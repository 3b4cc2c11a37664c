import type { Command } from 'commander';
import { deleteNamedProfile, listNamedProfiles, namedProfile, saveNamedProfile } from '../db/sql/profiles.js';
import { InputError } from '../errors.js';
import { checkName } from '../names.js';
import { mean, nullRate, stddev, type ColumnProfile } from '../profile/profile.js';
import { round } from '../profile/gates.js';
import { formatCount, printJson, printTable, withContext } from './context.js';

const num = (v: number | null) => (v === null ? '-' : round(v));

export function profilesCommands(program: Command): void {
  const profiles = program
    .command('profiles')
    .description('named drift baselines made from training data (a job uses one with "monitor": {"baseline": "profile:<name>"})');
  profiles
    .command('create <name>')
    .description("profile the rows a model was trained on, with a job's features, as a drift baseline")
    .requiredOption('--job <job>', 'the job whose features (and their types) are profiled')
    .option('--table <table>', 'a table holding those feature columns')
    .option('--date <date>', "with --table: only this date of the job's partition column")
    .option('--query <sql>', 'or a SELECT returning those feature columns (one statement, run read-only)')
    .action(async (name: string, opts: { job: string; table?: string; query?: string; date?: string }) => {
      checkName(name, 'profile name');
      const { loadJob } = await import('../definitions/load.js');
      const { resolveJob } = await import('../definitions/check.js');
      const { profileTrainingData } = await import('../profile/training.js');
      await withContext(async ({ config, db }) => {
        const job = await resolveJob(db.pool, loadJob(config.jobsDir, opts.job));
        const p = await profileTrainingData(db.pool, job, opts);
        if (p.rows === 0) throw new InputError(`the ${p.describe} has no rows: nothing to profile`);
        const created = await saveNamedProfile(db.pool, {
          name,
          job: job.name,
          source: p.describe,
          rows: p.rows,
          columns: p.columns,
        });
        if (!created) throw new InputError(`profile "${name}" exists already: prescore profiles delete ${name} first`);
        process.stdout.write(
          `profile ${name}: ${formatCount(p.rows)} rows of the ${p.describe}, ${p.columns.length} features of job ${job.name}\n`,
        );
      });
    });
  profiles
    .command('list')
    .description('the named profiles')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const list = await listNamedProfiles(db.pool);
        if (opts.json) return printJson(list.map(({ columns: _c, ...p }) => p));
        printTable(
          ['NAME', 'JOB', 'ROWS', 'SOURCE', 'CREATED'],
          list.map((p) => [p.name, p.job, formatCount(p.rows), p.source, p.createdAt]),
        );
      });
    });
  profiles
    .command('show <name>')
    .description("a profile's columns: count, NULL share, mean, stddev, min, max")
    .option('--json', 'machine-readable output (with the histograms)')
    .action(async (name: string, opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const p = await namedProfile<ColumnProfile[]>(db.pool, name);
        if (!p) throw new InputError(`profile "${name}" does not exist: see prescore profiles list`);
        if (opts.json) return printJson(p);
        process.stdout.write(`profile ${name}: job ${p.job}, ${formatCount(p.rows)} rows of the ${p.source}, ${p.createdAt}\n`);
        printTable(
          ['COLUMN', 'COUNT', 'NULL', 'MEAN', 'STDDEV', 'MIN', 'MAX'],
          p.columns.map((c) => [
            c.column,
            formatCount(c.count),
            `${(nullRate(c) * 100).toFixed(1)}%`,
            num(mean(c)),
            num(stddev(c)),
            num(c.min),
            num(c.max),
          ]),
        );
      });
    });
  profiles
    .command('delete <name>')
    .description('delete a named profile (jobs that name it then fail validation)')
    .action(async (name: string) => {
      await withContext(async ({ db }) => {
        if (!(await deleteNamedProfile(db.pool, name)))
          throw new InputError(`profile "${name}" does not exist: see prescore profiles list`);
        process.stdout.write(`deleted profile ${name}\n`);
      });
    });
}
