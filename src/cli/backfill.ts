import type { Command } from 'commander';
import type { RunInfo } from '../db/sql/run-info.js';
import { latestRunsBetween } from '../db/sql/runs.js';
import { InputError, RunError, errorMessage } from '../errors.js';
import { formatCount, printTable, withContext } from './context.js';
import type { LocalRuns } from './interrupt.js';
import { integer } from './options.js';

type Outcome = { date: string; status: string; runId?: string; error?: string };

function outcomeLine(o: Outcome): string {
  return `${o.date} ${o.status}${o.runId ? ` (run ${o.runId})` : ''}${o.error ? `: ${o.error}` : ''}`;
}

export function backfillCommand(program: Command): void {
  program
    .command('backfill <job>')
    .description('score a range of past dates, one run per date; skips published dates; rerun to resume')
    .requiredOption('--from <date>', 'first date YYYY-MM-DD')
    .requiredOption('--to <date>', 'last date YYYY-MM-DD (inclusive)')
    .option('--concurrency <n>', 'runs in flight at once (1 to 64)', integer('--concurrency', 1, 64), 2)
    .option('--force', 'also re-score dates that are already published')
    .option('--full', 'an incremental job: score every row of each date, carrying nothing over')
    .option('--dry-run', 'print the dates, row counts and chunk counts, run nothing')
    .option('--local', 'score in this process instead of handing runs to `prescore worker`s')
    .option(
      '--wait-for-workers',
      'when no worker listens on the queue, keep waiting for one (default: exit 3, the run left queued)',
    )
    .option('--status', 'print each date of the range with its state (published, failed, held, running, missing), run nothing')
    .action(
      async (
        name: string,
        opts: {
          from: string;
          to: string;
          concurrency: number;
          force?: boolean;
          full?: boolean;
          dryRun?: boolean;
          local?: boolean;
          status?: boolean;
          waitForWorkers?: boolean;
        },
      ) => {
        const { backfillDates, backfillPlan, publishedSet, startDate } = await import('../runs/backfill.js');
        const { loadJob } = await import('../definitions/load.js');
        const dates = backfillDates(opts.from, opts.to);
        await withContext(async ({ config, db, log, notifications }) => {
          if (opts.status) {
            loadJob(config.jobsDir, name); // a typo in the name is an error, not an empty grid
            const runs = new Map((await latestRunsBetween(db.pool, name, opts.from, opts.to)).map((r) => [r.date, r]));
            const grid = dates.map((date) => {
              const r = runs.get(date);
              const state = !r
                ? 'missing'
                : r.status === 'superseded'
                  ? 'published'
                  : r.status === 'finalizing'
                    ? 'running'
                    : r.status;
              return [date, state, r?.id ?? null];
            });
            if (opts.dryRun) throw new InputError('--status and --dry-run: give one');
            printTable(['DATE', 'STATUS', 'RUN'], grid);
            const counts = new Map<string, number>();
            for (const [, state] of grid) counts.set(String(state), (counts.get(String(state)) ?? 0) + 1);
            process.stdout.write(`${name} ${opts.from}..${opts.to}: ${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')}\n`);
            return;
          }
          const { resolveJob } = await import('../definitions/check.js');
          const job = await resolveJob(db.pool, loadJob(config.jobsDir, name));
          const options = { force: Boolean(opts.force), full: Boolean(opts.full), published: await publishedSet(db.pool, name) };
          if (opts.dryRun) {
            const plan = await backfillPlan(db.pool, job, dates, options);
            printTable(
              ['DATE', 'ROWS', 'CHUNKS', 'ACTION'],
              plan.map((p) => [p.date, formatCount(p.rows), p.chunks, p.action]),
            );
            return;
          }

          const { ProgressBoard } = await import('./progress.js');
          const { followRun } = await import('../runs/control.js');
          const board = new ProgressBoard();
          const overall = board.dates(`${name} all dates  `, dates.length);
          const outcomes = new Map<string, Outcome>();
          const pending = [...dates];
          // Inference in this process (--local) or the queue: only that mode's modules are loaded.
          const inference = opts.local ? new (await import('../inference/pool.js')).InferencePool(config.inferenceThreads) : null;
          let totalRows = 0;
          // With --local, the runs this process executes: Ctrl-C marks them failed.
          let localRuns: LocalRuns | undefined;
          // Without a terminal, one line per date, in date order: a date is printed once every
          // earlier date has ended.
          let printed = 0;
          const printInOrder = () => {
            if (process.stderr.isTTY) return;
            while (printed < dates.length && outcomes.has(dates[printed]!))
              board.log(outcomeLine(outcomes.get(dates[printed++]!)!));
          };

          const one = async (date: string, enqueue: ((id: string) => Promise<boolean>) | null): Promise<Outcome> => {
            const start = await startDate(db.pool, job, date, options);
            if ('skipped' in start) return { date, status: `skipped (${start.skipped})` };
            const id = start.runId;
            notifications.track(id);
            const bar = board.run(`${name} ${date}`);
            let run: RunInfo;
            try {
              if (enqueue) {
                await enqueue(id);
                run = await followRun(db.pool, id, (r) => bar.update(r));
              } else {
                localRuns?.add(id);
                try {
                  const { executeLocally } = await import('../runs/local.js');
                  run = await executeLocally(db.pool, inference!, log, id, {
                    concurrency: config.chunkConcurrency,
                    onProgress: (p) => bar.update(p),
                  });
                } catch (err) {
                  return { date, status: 'failed', runId: id, error: errorMessage(err) };
                } finally {
                  localRuns?.delete(id);
                }
              }
              bar.update(run);
            } finally {
              bar.stop();
            }
            totalRows += run.rowsRead;
            return { date, status: run.status, runId: id, error: run.error ?? undefined };
          };

          const lanes = async (enqueue: ((id: string) => Promise<boolean>) | null) => {
            const lane = async () => {
              for (let date = pending.shift(); date; date = pending.shift()) {
                outcomes.set(date, await one(date, enqueue));
                overall.done(totalRows);
                printInOrder();
              }
            };
            await Promise.all(Array.from({ length: Math.min(opts.concurrency, dates.length) }, lane));
          };
          try {
            if (opts.local) {
              const { failRunsOnSignal } = await import('./interrupt.js');
              await failRunsOnSignal(db.url, log, (runs) => {
                localRuns = runs;
                return lanes(null);
              });
            } else {
              const { withEnqueuer } = await import('./queueing.js');
              await withEnqueuer(config, db, (enqueue) => lanes(enqueue), { waitForWorkers: Boolean(opts.waitForWorkers) });
            }
          } finally {
            board.stop();
            await inference?.close();
          }
          const ended = dates.map((d) => outcomes.get(d)!);
          const counts = new Map<string, number>();
          for (const o of ended) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
          const held = ended.filter((o) => o.status === 'held' || o.status === 'skipped (held)');
          if (held.length) {
            process.stderr.write(
              `held by quality gates, not published: ${held.map((o) => o.date + (o.runId ? ` (run ${o.runId})` : '')).join(', ')}; see prescore runs report, then runs approve or reject\n`,
            );
          }
          // The summary comes last, after every per-date line and notice.
          process.stdout.write(
            `backfill ${name} ${opts.from}..${opts.to}: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}; ${formatCount(totalRows)} rows\n`,
          );
          const failed = ended.filter((o) => o.status === 'failed' || o.status === 'cancelled');
          if (failed.length) {
            throw new RunError(
              failed[0]!.runId ?? '?',
              `${failed.length} date(s) failed: ${failed.map((o) => `${o.date} (run ${o.runId}): ${o.error}`).join('; ')}; run the same backfill again to retry them`,
            );
          }
        });
      },
    );
}
