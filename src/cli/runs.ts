import type { Command } from 'commander';
import { InputError } from '../errors.js';
import { getRun, listRuns } from '../runs/store.js';
import { formatCount, printJson, printTable, withContext } from './context.js';

export function runsCommands(program: Command): void {
  const runs = program.command('runs').description('run history');
  runs
    .command('list')
    .description('recent runs, newest first')
    .option('--job <job>', 'only this job')
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'machine-readable output')
    .action(async (opts: { job?: string; limit: string; json?: boolean }) => {
      await withContext(async ({ db }) => {
        const list = await listRuns(db.pool, { job: opts.job, limit: Number(opts.limit) || 50 });
        if (opts.json) return printJson(list);
        printTable(
          ['RUN', 'JOB', 'DATE', 'STATUS', 'MODEL', 'READ', 'WRITTEN', 'REJECTED', 'SECONDS', 'ROWS/S', 'ERROR'],
          list.map((r) => [
            r.id,
            r.job,
            r.date,
            r.status,
            `${r.modelName} v${r.modelVersion}`,
            formatCount(r.rowsRead),
            formatCount(r.rowsWritten),
            formatCount(r.rowsRejected),
            r.durationMs === null ? null : (r.durationMs / 1000).toFixed(1),
            r.rowsPerSecond === null ? null : formatCount(r.rowsPerSecond),
            r.error ? r.error.slice(0, 80) : null,
          ]),
        );
      });
    });
  runs
    .command('show <id>')
    .description('one run in full')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { json?: boolean }) => {
      if (!/^\d+$/.test(id)) throw new InputError(`run id must be a number (got "${id}")`);
      await withContext(async ({ db }) => {
        const run = await getRun(db.pool, id);
        if (!run) throw new InputError(`run ${id} does not exist: see prescore runs list`);
        if (opts.json) return printJson(run);
        for (const [k, v] of Object.entries(run)) process.stdout.write(`${k.padEnd(14)} ${v ?? '-'}\n`);
      });
    });
}
