import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { InputError, RunError, errorMessage } from '../errors.js';
import { resolveJob } from '../definitions/check.js';
import { loadJob } from '../definitions/load.js';
import { InferencePool } from '../inference/pool.js';
import { addDays } from '../scheduler/calendar.js';
import { followRun, retryRun } from '../runs/control.js';
import { executeLocally } from '../runs/local.js';
import { ActiveRunError, checkDate, planRun } from '../runs/plan.js';
import type { RunInfo } from '../runs/store.js';
import { countSourceRows } from '../source/plan.js';
import { failRunsOnSignal, type LocalRuns } from './interrupt.js';
import { integer } from './options.js';
import { formatCount, printTable, withContext } from './context.js';
import { withEnqueuer } from './queueing.js';

const MAX_DAYS = 3660;

export function datesBetween(from: string, to: string): string[] {
  checkDate(from);
  checkDate(to);
  if (from > to) throw new InputError(`--from ${from} is after --to ${to}`);
  const dates: string[] = [];
  for (let d = from; d <= to; d = addDays(d, 1)) {
    dates.push(d);
    if (dates.length > MAX_DAYS) throw new InputError(`a backfill covers at most ${MAX_DAYS} days`);
  }
  return dates;
}

type Outcome = { date: string; status: string; runId?: string; error?: string };

export function backfillCommand(program: Command): void {
  program
    .command('backfill <job>')
    .description('score a range of past dates, one run per date; skips published dates; rerun to resume')
    .requiredOption('--from <date>', 'first date YYYY-MM-DD')
    .requiredOption('--to <date>', 'last date YYYY-MM-DD (inclusive)')
    .option('--concurrency <n>', 'runs in flight at once (1 to 64)', integer('--concurrency', 1, 64), 2)
    .option('--force', 'also re-score dates that are already published')
    .option('--dry-run', 'print the dates, row counts and chunk counts, run nothing')
    .option('--local', 'score in this process instead of handing runs to `prescore worker`s')
    .action(
      async (
        name: string,
        opts: { from: string; to: string; concurrency: number; force?: boolean; dryRun?: boolean; local?: boolean },
      ) => {
        const dates = datesBetween(opts.from, opts.to);
        const concurrency = opts.concurrency;
        await withContext(async ({ config, db, log }) => {
          const job = loadJob(config.jobsDir, name);
          const resolved = await resolveJob(db.pool, job);
          const published = new Set(
            (await db.pool.query<{ date: string }>('SELECT date::text FROM prescore.serving WHERE job = $1', [name])).rows.map(
              (r) => r.date,
            ),
          );
          if (opts.dryRun) {
            const rows: (string | number)[][] = [];
            for (const date of dates) {
              const n = await countSourceRows(db.pool, resolved, date);
              const action = n === 0 ? 'skip (no rows)' : published.has(date) && !opts.force ? 'skip (published)' : 'run';
              rows.push([date, formatCount(n), n === 0 ? 0 : Math.ceil(n / resolved.spec.chunkRows), action]);
            }
            printTable(['DATE', 'ROWS', 'CHUNKS', 'ACTION'], rows);
            return;
          }

          const tty = process.stderr.isTTY;
          const multi = tty
            ? new cliProgress.MultiBar(
                {
                  stream: process.stderr,
                  format: '{label} [{bar}] {percentage}% | {rows} rows | {rate} rows/s | ETA {eta_formatted}',
                  hideCursor: true,
                  clearOnComplete: false,
                },
                cliProgress.Presets.shades_classic,
              )
            : null;
          const overall = multi?.create(dates.length, 0, { label: `${name} all dates  `, rows: '', rate: '-' });
          const outcomes: Outcome[] = [];
          const pending = [...dates];
          const inference = opts.local ? new InferencePool(config.inferenceThreads) : null;
          const started = Date.now();
          let totalRows = 0;
          // With --local, the runs this process executes: Ctrl-C marks them failed.
          let localRuns: LocalRuns | undefined;

          const one = async (date: string, enqueue: ((id: string) => Promise<boolean>) | null): Promise<Outcome> => {
            if (published.has(date) && !opts.force) return { date, status: 'skipped (published)' };
            // Resume rather than restart: follow an active run, retry a failed one (its done
            // chunks stay), plan a new run only when there is none to continue.
            const latest = (
              await db.pool.query<{ id: string; status: string }>(
                `SELECT id::text, status FROM prescore.runs WHERE job = $1 AND date = $2::date ORDER BY id DESC LIMIT 1`,
                [name, date],
              )
            ).rows[0];
            let runId: string | undefined;
            if (latest && (latest.status === 'running' || latest.status === 'finalizing')) runId = latest.id;
            else if (latest?.status === 'failed') {
              runId = await retryRun(db.pool, latest.id).then(
                (r) => r.id,
                () => undefined, // its predictions were dropped: plan a new run
              );
            }
            if (runId === undefined) {
              try {
                runId = (await planRun(db.pool, resolved, date, 'backfill')).runId;
              } catch (err) {
                if (err instanceof ActiveRunError) runId = err.runId;
                else if (err instanceof InputError && /no rows in/.test(err.message))
                  return { date, status: 'skipped (no rows)' };
                else throw err;
              }
            }
            const id = runId;
            const bar = multi?.create(1, 0, { label: `${name} ${date}`, rows: '0', rate: '-' });
            const t0 = Date.now();
            const update = (r: Pick<RunInfo, 'rowsRead' | 'rowsPlanned'>) => {
              bar?.setTotal(Math.max(1, r.rowsPlanned));
              bar?.update(r.rowsRead, {
                rows: `${formatCount(r.rowsRead)}/${formatCount(r.rowsPlanned)}`,
                rate: formatCount(Math.round(r.rowsRead / Math.max(0.001, (Date.now() - t0) / 1000))),
              });
            };
            let run: RunInfo;
            if (enqueue) {
              await enqueue(id);
              run = await followRun(db.pool, id, update);
            } else {
              localRuns?.add(id);
              try {
                run = await executeLocally(db.pool, inference!, log, id, {
                  concurrency: config.chunkConcurrency,
                  onProgress: (p) => update(p),
                });
              } catch (err) {
                return { date, status: 'failed', runId: id, error: errorMessage(err) };
              } finally {
                localRuns?.delete(id);
              }
            }
            update(run);
            bar?.stop();
            totalRows += run.rowsRead;
            return { date, status: run.status, runId: id, error: run.error ?? undefined };
          };

          const lanes = async (enqueue: ((id: string) => Promise<boolean>) | null) => {
            const lane = async () => {
              for (let date = pending.shift(); date; date = pending.shift()) {
                const o = await one(date, enqueue);
                outcomes.push(o);
                const secs = (Date.now() - started) / 1000;
                overall?.increment(1, {
                  rows: formatCount(totalRows),
                  rate: formatCount(Math.round(totalRows / Math.max(secs, 0.001))),
                });
                if (!tty)
                  process.stderr.write(
                    `${o.date} ${o.status}${o.runId ? ` (run ${o.runId})` : ''}${o.error ? `: ${o.error}` : ''}\n`,
                  );
              }
            };
            await Promise.all(Array.from({ length: Math.min(concurrency, dates.length) }, lane));
          };
          try {
            if (opts.local)
              await failRunsOnSignal(db.url, log, (runs) => {
                localRuns = runs;
                return lanes(null);
              });
            else await withEnqueuer(config, db, (enqueue) => lanes(enqueue));
          } finally {
            multi?.stop();
            await inference?.close();
          }
          outcomes.sort((a, b) => a.date.localeCompare(b.date));
          const counts = new Map<string, number>();
          for (const o of outcomes) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
          process.stdout.write(
            `backfill ${name} ${opts.from}..${opts.to}: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}; ${formatCount(totalRows)} rows\n`,
          );
          const failed = outcomes.filter((o) => o.status === 'failed' || o.status === 'cancelled');
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
