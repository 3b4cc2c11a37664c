import type { Command } from 'commander';
import { printJson, printTable, withContext } from './context.js';

// No commander default for --job: its help would show `(default: [])` beside the one in the text.
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function tokensCommands(program: Command): void {
  const tokens = program.command('tokens').description('bearer tokens of the HTTP API');
  tokens
    .command('create')
    .description('create a token and print it once (only its sha256 is stored)')
    .option('--job <job>', 'may read only this job (repeat for several; default: every job)', collect)
    .option('--name <name>', 'what the token is for, e.g. the client')
    .option('--json', 'machine-readable output')
    .action(async (opts: { job?: string[]; name?: string; json?: boolean }) => {
      const { createToken } = await import('../api/tokens.js');
      await withContext(async ({ db }) => {
        const { token, info } = await createToken(db.pool, { name: opts.name, jobs: opts.job ?? [] });
        if (opts.json) return printJson({ ...info, token });
        process.stderr.write(
          `created token ${info.id}${info.name ? ` (${info.name})` : ''} for ${info.jobs ? `jobs ${info.jobs.join(', ')}` : 'every job'}; ` +
            'it is shown only this once:\n',
        );
        process.stdout.write(`${token}\n`);
      });
    });
  tokens
    .command('list')
    .description('tokens and their scope (never the secrets)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const { listTokens } = await import('../api/tokens.js');
      await withContext(async ({ db }) => {
        const list = await listTokens(db.pool);
        if (opts.json) return printJson(list);
        printTable(
          ['ID', 'NAME', 'JOBS', 'CREATED', 'REVOKED'],
          list.map((t) => [
            t.id,
            t.name,
            t.jobs ? t.jobs.join(',') : '(all)',
            t.createdAt.slice(0, 19),
            t.revokedAt?.slice(0, 19) ?? null,
          ]),
        );
      });
    });
  tokens
    .command('revoke <id>')
    .description('revoke a token: running servers refuse it within a second')
    .action(async (id: string) => {
      const { revokeToken } = await import('../api/tokens.js');
      await withContext(async ({ db }) => {
        const revoked = await revokeToken(db.pool, id);
        process.stdout.write(revoked ? `revoked token ${id}\n` : `token ${id} was already revoked\n`);
      });
    });
}
