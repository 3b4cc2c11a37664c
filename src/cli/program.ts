import { Command } from 'commander';
import { demoCommand } from './demo.js';
import { exportCommand } from './export.js';
import { jobsCommands } from './jobs.js';
import { modelsCommands } from './models.js';
import { profilesCommands } from './profiles.js';
import { runCommand } from './run.js';
import { rejectsCommand, runsCommands } from './runs.js';
import { serveCommand } from './serve.js';
import { tokensCommands } from './tokens.js';
import { withContext } from './context.js';
import { backfillCommand } from './backfill.js';
import { evaluateCommand } from './evaluate.js';
import { schedulerCommand } from './scheduler.js';
import { workerCommands } from './worker.js';

// Every command's help says what it reads from the environment.
const ENV_HELP = `
Environment:
  DATABASE_URL       PostgreSQL (without it: an embedded PostgreSQL, data in PRESCORE_HOME)
  REDIS_URL          the queue on Redis (without it: BullMQ's PostgreSQL backend in the same database)
  PRESCORE_JOBS_DIR  job files (default ./jobs)
  more in the README's Environment section`;

/**
 * The whole command line: every command, its options and help. Built apart from main.ts (which
 * parses process.argv and sets the exit code) so tests can walk the commands in-process.
 * Building it loads no package but commander: each action imports what it runs when it runs,
 * so `--help` and `--version` answer at once and a command loads only its own code.
 */
export function buildProgram(): Command {
  const program = new Command('prescore')
    .description('Scheduled batch inference: PostgreSQL features in, ONNX predictions out, served by key.')
    .version('0.1.0')
    .option('--verbose', 'print stack traces with errors (anywhere on the line)')
    // The last line on stderr is always the error; where to look for the right words follows it.
    .configureOutput({
      outputError: (str, write) => write(str.replace(/\n?$/, ' (see prescore --help, or prescore <command> --help)\n')),
    })
    // Global options only before the command, so `models register --version 3` is the model's.
    .enablePositionalOptions()
    .exitOverride();

  program
    .command('migrate')
    .description('create or upgrade the prescore schema (safe to run twice or concurrently)')
    .action(async () => {
      const { migrate } = await import('../db/migrate.js');
      await withContext(
        async ({ db, log }) => {
          const applied = await migrate(db.pool, log);
          process.stdout.write(applied.length ? `applied ${applied.join(', ')}\n` : 'schema is up to date\n');
        },
        { migrate: false },
      );
    });
  modelsCommands(program);
  jobsCommands(program);
  runCommand(program);
  runsCommands(program);
  rejectsCommand(program);
  exportCommand(program);
  evaluateCommand(program);
  profilesCommands(program);
  serveCommand(program);
  tokensCommands(program);
  backfillCommand(program);
  workerCommands(program);
  schedulerCommand(program);
  demoCommand(program);

  const withEnvHelp = (c: Command) => {
    c.addHelpText('after', ENV_HELP);
    c.commands.forEach(withEnvHelp);
  };
  withEnvHelp(program);
  return program;
}
