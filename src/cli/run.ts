import type { Command } from 'commander';
import { loadJob } from '../definitions/load.js';
import { InferencePool } from '../inference/pool.js';
import { runLocally } from '../runs/local.js';
import { checkDate } from '../runs/plan.js';
import { formatCount, printJson, withContext } from './context.js';
import { progressBar } from './progress.js';
import type { RunInfo } from '../runs/store.js';

/** Today's date in a time zone, as YYYY-MM-DD. */
export function todayIn(timeZone: string, now = new Date()): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(now);
}

export function summary(run: RunInfo): string {
  const secs = run.durationMs === null ? '?' : (run.durationMs / 1000).toFixed(1);
  return (
    `run ${run.id} ${run.status}: ${run.job} ${run.date}, model ${run.modelName} v${run.modelVersion}, ` +
    `${formatCount(run.rowsRead)} read, ${formatCount(run.rowsWritten)} written, ${formatCount(run.rowsRejected)} rejected, ` +
    `${secs} s (${formatCount(run.rowsPerSecond ?? 0)} rows/s)`
  );
}

export function runCommand(program: Command): void {
  program
    .command('run <job>')
    .description('score one date of a job in this process and publish it')
    .option('--date <date>', 'the partition date YYYY-MM-DD (default: today in the job time zone)')
    .option('--concurrency <n>', 'chunks in flight at once in this process')
    .option('--json', 'print the run as `runs show --json` does')
    .action(async (name: string, opts: { date?: string; concurrency?: string; json?: boolean }) => {
      await withContext(async ({ config, db, log }) => {
        const job = loadJob(config.jobsDir, name);
        const date = checkDate(opts.date ?? todayIn(job.spec.schedule?.timezone ?? 'UTC'));
        const inference = new InferencePool(config.inferenceThreads);
        const bar = progressBar(`${name} ${date}`);
        try {
          const run = await runLocally(db.pool, inference, log, job, {
            date,
            concurrency: opts.concurrency ? Math.max(1, Number(opts.concurrency)) : config.chunkConcurrency,
            onProgress: (p) => bar.update(p),
          });
          bar.stop();
          if (opts.json) printJson(run);
          else process.stdout.write(summary(run) + '\n');
        } finally {
          bar.stop();
          await inference.close();
        }
      });
    });
}
