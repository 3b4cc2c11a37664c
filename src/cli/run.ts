import type { Command } from 'commander';
import { ActiveRunError, NoRowsError, RunError } from '../errors.js';
import { checkDate, localDate } from '../dates.js';
import { formatCount, printJson, printTable, withContext } from './context.js';
import { integer } from './options.js';
import type { RunInfo } from '../db/sql/run-info.js';

export function summary(run: RunInfo): string {
  const secs = run.durationMs === null ? '?' : (run.durationMs / 1000).toFixed(1);
  return (
    `run ${run.id} ${run.status}: ${run.job} ${run.date}, model ${run.modelName} v${run.modelVersion}, ` +
    `${formatCount(run.rowsRead)} read, ${formatCount(run.rowsWritten)} written, ${formatCount(run.rowsRejected)} rejected, ` +
    `${secs} s (${formatCount(run.rowsPerSecond ?? 0)} rows/s)` +
    (run.rowsCarried > 0
      ? `, ${formatCount(run.rowsCarried)} of the rows read carried over from run ${String(run.incremental?.baseRunId ?? '?')}`
      : '')
  );
}

/** A held run is not published: the command fails, saying why and what to do. */
export function heldError(run: RunInfo): RunError {
  return new RunError(
    run.id,
    `run ${run.id} held, not published: ${run.heldReason ?? 'a quality gate'}; see prescore runs report ${run.id}, then prescore runs approve ${run.id} --reason "..." or runs reject ${run.id}`,
  );
}

/** Prints a finished run (JSON or its summary line); a run that did not publish is an error. */
function report(run: RunInfo, json: boolean | undefined): void {
  if (json) printJson(run);
  else process.stdout.write(summary(run) + '\n');
  if (run.status === 'held') throw heldError(run);
  if (run.status !== 'published') throw new RunError(run.id, `run ${run.id} ${run.status}: ${run.error ?? 'no error recorded'}`);
}

export function runCommand(program: Command): void {
  program
    .command('run <job>')
    .description('score one date of a job in this process and publish it')
    .option('--date <date>', 'the partition date YYYY-MM-DD (default: today in the job time zone)')
    .option('--concurrency <n>', 'chunks in flight at once in this process (1 to 256)', integer('--concurrency', 1, 256))
    .option('--queue', 'hand the chunks to the running `prescore worker`s and follow the run to its end')
    .option('--no-wait', 'with --queue: print the run id and return')
    .option(
      '--wait-for-workers',
      'with --queue: when no worker listens on the queue, keep waiting for one (default: exit 3 after a few seconds, the run left queued)',
    )
    .option('--full', 'an incremental job: score every row, carrying nothing over from the previous run')
    .option('--json', 'print the run as `runs show --json` does')
    .option(
      '--sample <n>',
      'score the first n rows (1 to 1000) of the date in memory and print them; store nothing',
      integer('--sample', 1, 1000),
    )
    .action(
      async (
        name: string,
        opts: {
          date?: string;
          concurrency?: number;
          queue?: boolean;
          wait: boolean;
          waitForWorkers?: boolean;
          json?: boolean;
          sample?: number;
          full?: boolean;
        },
      ) => {
        await withContext(
          async ({ config, db, log, notifications }) => {
            const { loadJob } = await import('../definitions/load.js');
            const { resolveJob } = await import('../definitions/check.js');
            const job = loadJob(config.jobsDir, name);
            const date = checkDate(opts.date ?? localDate(new Date(), job.spec.schedule?.timezone ?? 'UTC'));
            if (opts.sample !== undefined) {
              const { sampleRun } = await import('../runs/sample.js');
              const resolved = await resolveJob(db.pool, job);
              const rows = await sampleRun(db.pool, resolved, date, opts.sample);
              if (opts.json) return printJson(rows);
              if (rows.length === 0) throw new NoRowsError(`job ${name}: no rows for ${date}; nothing to sample`);
              const names = resolved.features.map((f) => f.name);
              printTable(
                ['KEY', ...names, 'SCORE', 'LABEL', 'OUTPUTS', 'REJECTED'],
                rows.map((r) => [
                  r.key ?? '(NULL)',
                  ...r.features.map((v) => (v === null ? 'NULL' : String(v))),
                  r.score === null ? null : String(r.score),
                  r.label,
                  r.outputs === null ? null : r.outputs.map((v) => v.toPrecision(4)).join(' '),
                  r.rejected,
                ]),
              );
              process.stdout.write(
                `${rows.length} rows of ${name} ${date}, model ${resolved.model.name} v${resolved.model.version}; nothing stored\n`,
              );
              return;
            }
            const { progressBar } = await import('./progress.js');
            if (opts.queue) {
              const { withEnqueuer } = await import('./queueing.js');
              const { planRun } = await import('../runs/plan.js');
              const { followRun } = await import('../runs/control.js');
              const runId = await withEnqueuer(
                config,
                db,
                async (enqueue) => {
                  let id: string;
                  try {
                    id = (await planRun(db.pool, await resolveJob(db.pool, job), date, 'cli', { full: opts.full })).runId;
                  } catch (err) {
                    // Another trigger got there first: follow that run instead of starting a second.
                    if (!(err instanceof ActiveRunError)) throw err;
                    id = err.runId;
                    log.info({ runId: id }, 'following the active run of this job and date');
                  }
                  await enqueue(id);
                  notifications.track(id);
                  return id;
                },
                opts.wait ? { waitForWorkers: Boolean(opts.waitForWorkers) } : undefined,
              );
              if (!opts.wait) {
                process.stdout.write(opts.json ? JSON.stringify({ id: runId }) + '\n' : `run ${runId} queued\n`);
                return;
              }
              const bar = progressBar(`${name} ${date}`);
              const run = await followRun(db.pool, runId, (r) => bar.update(r));
              bar.stop();
              report(run, opts.json);
              return;
            }
            const { InferencePool } = await import('../inference/pool.js');
            const { runLocally } = await import('../runs/local.js');
            const { failRunsOnSignal } = await import('./interrupt.js');
            const concurrency = opts.concurrency ?? config.chunkConcurrency;
            const inference = new InferencePool(config.inferenceThreads);
            const bar = progressBar(`${name} ${date}`);
            try {
              const run = await failRunsOnSignal(db.url, log, (runs) =>
                runLocally(db.pool, inference, log, job, {
                  date,
                  concurrency,
                  full: opts.full,
                  onProgress: (p) => bar.update(p),
                  onPlanned: (id) => {
                    runs.add(id);
                    notifications.track(id);
                  },
                }),
              );
              bar.stop();
              report(run, opts.json);
            } finally {
              bar.stop();
              await inference.close();
            }
          },
          { dispatch: true },
        );
      },
    );
}
