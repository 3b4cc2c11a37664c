import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { InputError, RunError } from '../errors.js';
import { runPlan } from '../db/sql/runs.js';
import { getRun, listRuns } from '../db/sql/run-info.js';
import { summary } from './run.js';
import { formatCount, printJson, printTable, withContext } from './context.js';
import { loadReport } from '../db/sql/profiles.js';
import { listRejects, rejectCounts } from '../db/sql/rejects.js';
import { listRunModels } from '../db/sql/run-models.js';
import { compareRun, type Comparison } from '../db/sql/compare.js';
import type { DriftReport } from '../profile/drift.js';
import type { Breach } from '../profile/gates.js';
import { renderReport } from './report.js';
import { integer, runId } from './options.js';
import { servingRunIds } from '../db/sql/serving.js';
import { listRollbacks } from '../db/sql/rollbacks.js';
import { checkDate } from '../dates.js';
import { checkName } from '../names.js';

export function runsCommands(program: Command): void {
  const runs = program.command('runs').description('run history');
  runs
    .command('list')
    .description('recent runs, newest first')
    .option('--job <job>', 'only this job')
    .option('--limit <n>', 'how many (1 to 10000)', integer('--limit', 1, 10_000), 50)
    .option('--json', 'machine-readable output')
    .action(async (opts: { job?: string; limit: number; json?: boolean }) => {
      await withContext(async ({ config, db }) => {
        const list = await listRuns(db.pool, { job: opts.job, limit: opts.limit });
        if (opts.job !== undefined && list.length === 0 && !fs.existsSync(path.join(config.jobsDir, `${opts.job}.json`))) {
          throw new InputError(
            `no job "${opts.job}": no file ${opts.job}.json in ${config.jobsDir} and no runs (see prescore jobs list)`,
          );
        }
        const serving = await servingRunIds(
          db.pool,
          list.map((r) => r.id),
        );
        if (opts.json) return printJson(list.map((r) => ({ ...r, serving: serving.has(r.id) })));
        printTable(
          ['RUN', 'JOB', 'DATE', 'SERVING', 'STATUS', 'MODEL', 'READ', 'WRITTEN', 'REJECTED', 'SECONDS', 'ROWS/S', 'ERROR'],
          list.map((r) => [
            r.id,
            r.job,
            r.date,
            serving.has(r.id) ? '*' : '',
            r.status,
            `${r.modelName} v${r.modelVersion}`,
            formatCount(r.rowsRead),
            formatCount(r.rowsWritten),
            formatCount(r.rowsRejected),
            r.durationMs === null ? null : (r.durationMs / 1000).toFixed(1),
            r.rowsPerSecond === null ? null : formatCount(r.rowsPerSecond),
            r.error ? (r.error.length > 80 ? `${r.error.slice(0, 79)}…` : r.error) : null,
          ]),
        );
      });
    });
  runs
    .command('show')
    .argument('<id>', 'run id', runId)
    .description('one run in full')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const run = await getRun(db.pool, id);
        if (!run) throw new InputError(`run ${id} does not exist: see prescore runs list`);
        const rejectsByReason = await rejectCounts(db.pool, id);
        const models = (await listRunModels(db.pool, id)).map((m) => ({
          ...m,
          role: m.slot === 0 ? 'champion' : 'challenger',
        }));
        if (opts.json) return printJson({ ...run, rejectsByReason, models });
        for (const [k, v] of Object.entries(run)) {
          process.stdout.write(`${k.padEnd(14)} ${v !== null && typeof v === 'object' ? JSON.stringify(v) : (v ?? '-')}\n`);
        }
        for (const [reason, n] of Object.entries(rejectsByReason)) {
          process.stdout.write(`${'rejected'.padEnd(14)} ${formatCount(n)} × ${reason}\n`);
        }
        // Runs planned before challengers existed have no run_models rows: their model is above.
        if (models.length > 0) {
          process.stdout.write('\n');
          printTable(
            ['SLOT', 'ROLE', 'REF', 'MODEL', 'WRITTEN', 'REJECTED'],
            models.map((m) => [
              String(m.slot),
              m.role,
              m.ref,
              `${m.name} v${m.version}`,
              formatCount(m.rowsWritten),
              formatCount(m.rowsRejected),
            ]),
          );
          const bad = run.rowsRejected - models[0]!.rowsRejected;
          process.stdout.write(
            `(REJECTED: rows that model alone could not score; ${formatCount(bad)} rows with bad features are rejected for every model)\n`,
          );
        }
      });
    });
  runs
    .command('compare')
    .argument('<id>', 'run id', runId)
    .description(
      "each challenger of a run against its champion, on the run's rows: means, standard deviations, Pearson and Spearman correlation, mean absolute difference, label agreement, top-10% overlap, PSI",
    )
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const run = await getRun(db.pool, id);
        if (!run) throw new InputError(`run ${id} does not exist: see prescore runs list`);
        const result = await compareRun(db.pool, id);
        if (!result) {
          throw new InputError(
            `run ${id} (${run.job} ${run.date}, ${run.status}) has no stored predictions left to compare (dropped by retention, or the run was cancelled or rejected); compare a kept run (prescore runs list --job ${run.job})`,
          );
        }
        if (opts.json) return printJson({ ...result, job: run.job, date: run.date, status: run.status });
        if (result.comparisons.length === 0) {
          process.stdout.write(
            `run ${id} (${run.job} ${run.date}) scored no challengers, so there is nothing to compare: list up to 3 models in the job's "challengers" (e.g. "challengers": ["${run.modelName}@challenger"]) and run it again\n`,
          );
          return;
        }
        const c0 = result.champion;
        process.stdout.write(
          `run ${id}: ${run.job} ${run.date} (${run.status}), champion ${c0.ref} = ${c0.name} v${c0.version}${run.status === 'running' || run.status === 'finalizing' ? ' (still scoring: figures over the rows stored so far)' : ''}\n`,
        );
        for (const c of result.comparisons) process.stdout.write('\n' + renderComparison(c));
      });
    });
  runs
    .command('retry')
    .argument('<id>', 'run id', runId)
    .description('re-run the chunks of a failed run that are not done, then publish it')
    .option('--no-wait', 'queue runs: return once re-enqueued')
    .action(async (id: string, opts: { wait: boolean }) => {
      const { followRun, retryRun } = await import('../runs/control.js');
      const { progressBar } = await import('./progress.js');
      await withContext(async ({ config, db, log, notifications }) => {
        await retryRun(db.pool, id); // refuses a run that does not exist or did not fail
        notifications.track(id);
        const mode = (await runPlan(db.pool, id))!.mode;
        const bar = progressBar(`run ${id}`);
        let run;
        if (mode === 'queue') {
          const { withEnqueuer } = await import('./queueing.js');
          await withEnqueuer(config, db, (enqueue) => enqueue(id));
          if (!opts.wait) return void process.stdout.write(`run ${id} re-queued\n`);
          run = await followRun(db.pool, id, (r) => bar.update(r));
        } else {
          const { InferencePool } = await import('../inference/pool.js');
          const { executeLocally } = await import('../runs/local.js');
          const { failRunsOnSignal } = await import('./interrupt.js');
          const inference = new InferencePool(config.inferenceThreads);
          try {
            run = await failRunsOnSignal(db.url, log, (local) => {
              local.add(id);
              return executeLocally(db.pool, inference, log, id, {
                concurrency: config.chunkConcurrency,
                onProgress: (p) => bar.update(p),
              });
            });
          } finally {
            await inference.close();
          }
        }
        bar.stop();
        process.stdout.write(summary(run) + '\n');
        if (run.status !== 'published') throw new RunError(id, `run ${id} ${run.status}: ${run.error ?? ''}`);
      });
    });
  runs
    .command('cancel')
    .argument('<id>', 'run id', runId)
    .description('stop a run without publishing it (the previous run keeps serving)')
    .action(async (id: string) => {
      const { cancelRun } = await import('../runs/control.js');
      await withContext(async ({ db, log }) => {
        const run = await cancelRun(db.pool, id, log);
        process.stdout.write(`run ${run.id} cancelled: ${run.job} ${run.date}\n`);
      });
    });
  runs
    .command('rollback')
    .argument('<job>', 'job name')
    .description(
      'serve the previous kept run of a date again (or the run --to names), in one transaction; API readers switch within a second',
    )
    .option('--date <date>', "the date YYYY-MM-DD (default: the job's newest served date, or the date of the --to run)")
    .option(
      '--to <runId>',
      'the kept, published run of the job to serve (default: the newest kept run older than the serving one)',
      runId,
    )
    .option('--by <name>', 'who rolls back (default: the operating-system user)')
    .option('--reason <text>', 'why')
    .option('--json', 'print the recorded rollback {id, job, date, from, to, by, reason, at, activeRun}')
    .action(async (job: string, opts: { date?: string; to?: string; by?: string; reason?: string; json?: boolean }) => {
      checkName(job, 'job');
      if (opts.date !== undefined) checkDate(opts.date, '--date');
      const { rollbackServing } = await import('../sink/rollback.js');
      const { reviewer } = await import('../runs/review.js');
      await withContext(async ({ db }) => {
        const r = await rollbackServing(db.pool, {
          job,
          date: opts.date,
          to: opts.to,
          by: reviewer(opts.by),
          reason: opts.reason ?? null,
        });
        if (!r.changed) {
          if (opts.json) return printJson(r);
          return void process.stdout.write(`run ${r.to} already serves ${r.job} ${r.date}; nothing changed\n`);
        }
        if (opts.json) return printJson(r);
        process.stdout.write(`${r.job} ${r.date}: run ${r.to} serves again instead of run ${r.from} (rolled back by ${r.by})\n`);
        if (r.activeRun) {
          process.stderr.write(
            `warning: run ${r.activeRun} of ${r.job} ${r.date} is still in flight and will serve when it publishes; ` +
              `cancel it with prescore runs cancel ${r.activeRun} if it has the same problem\n`,
          );
        }
      });
    });
  runs
    .command('rollbacks')
    .description('the rollbacks recorded, newest first: job, date, from and to run, who, when, why')
    .option('--job <job>', 'only this job')
    .option('--limit <n>', 'how many (1 to 10000)', integer('--limit', 1, 10_000), 50)
    .option('--json', 'machine-readable output')
    .action(async (opts: { job?: string; limit: number; json?: boolean }) => {
      await withContext(async ({ db }) => {
        const list = await listRollbacks(db.pool, opts.job, opts.limit);
        if (opts.json) return printJson(list);
        printTable(
          ['AT', 'JOB', 'DATE', 'FROM', 'TO', 'BY', 'REASON'],
          list.map((r) => [r.at, r.job, r.date, r.from, r.to, r.by, r.reason]),
        );
      });
    });
  runs
    .command('report')
    .argument('<id>', 'run id', runId)
    .description("a run's drift against its baseline: per feature and output, PSI, JS, means, NULL rates, the gates it broke")
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const stored = await loadReport<DriftReport, Breach>(db.pool, id);
        if (!stored) {
          const run = await getRun(db.pool, id);
          if (!run) throw new InputError(`run ${id} does not exist: see prescore runs list`);
          throw new InputError(`run ${id} has no report: it is ${run.status} (a report is made when a run finishes scoring)`);
        }
        if (opts.json) return printJson(stored);
        process.stdout.write(renderReport(id, stored) + '\n');
      });
    });
  runs
    .command('approve')
    .argument('<id>', 'run id', runId)
    .description('publish a held run (recorded with who, when and why)')
    .requiredOption('--reason <text>', 'why the drift is acceptable')
    .option('--by <name>', 'who approves (default: the operating-system user)')
    .action(async (id: string, opts: { reason: string; by?: string }) => {
      const { approveRun, reviewer } = await import('../runs/review.js');
      await withContext(async ({ db, log, notifications }) => {
        notifications.track(id);
        const run = await approveRun(db.pool, id, { by: reviewer(opts.by), reason: opts.reason }, log);
        process.stdout.write(`${summary(run)}\n`);
      });
    });
  runs
    .command('reject')
    .argument('<id>', 'run id', runId)
    .description('drop a held run for good (the previous run keeps serving)')
    .option('--reason <text>', 'why')
    .option('--by <name>', 'who rejects (default: the operating-system user)')
    .action(async (id: string, opts: { reason?: string; by?: string }) => {
      const { rejectRun, reviewer } = await import('../runs/review.js');
      await withContext(async ({ db, log }) => {
        const run = await rejectRun(db.pool, id, { by: reviewer(opts.by), reason: opts.reason ?? null }, log);
        process.stdout.write(`run ${run.id} rejected: ${run.job} ${run.date}\n`);
      });
    });
}

/** `prescore rejects <runId>`: the source rows a run did not score, with the reason. */
export function rejectsCommand(program: Command): void {
  program
    .command('rejects')
    .argument('<runId>', 'run id', runId)
    .description("a run's rejected rows: key and reason (NULL, NaN or ±Infinity feature, overflow, model output not a number)")
    .option('--limit <n>', 'how many (1 to 1000000)', integer('--limit', 1, 1_000_000), 100)
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { limit: number; json?: boolean }) => {
      await withContext(async ({ db }) => {
        const run = await getRun(db.pool, id);
        if (!run) throw new InputError(`run ${id} does not exist: see prescore runs list`);
        const rows = await listRejects(db.pool, id, opts.limit);
        if (opts.json) return printJson(rows);
        printTable(
          ['KEY', 'REASON'],
          rows.map((r) => [r.key ?? '(NULL)', r.reason]),
        );
        if (run.rowsRejected > rows.length)
          process.stdout.write(`(${formatCount(rows.length)} of ${formatCount(run.rowsRejected)}; --limit for more)\n`);
      });
    });
}

function fixed(v: number | null, digits = 6): string {
  return v === null ? '-' : v.toFixed(digits);
}

function share(v: number | null): string {
  return v === null ? '-' : `${(v * 100).toFixed(2)}%`;
}

/** One challenger's figures as an aligned block. */
function renderComparison(c: Comparison): string {
  const lines = [
    `challengers[${c.slot - 1}] ${c.ref} = ${c.model.name} v${c.model.version}: ${formatCount(c.keys)} keys scored by both`,
    `  ${''.padEnd(18)}${'champion'.padStart(14)}${'challenger'.padStart(14)}`,
    `  ${'mean'.padEnd(18)}${fixed(c.champion.mean).padStart(14)}${fixed(c.challenger.mean).padStart(14)}`,
    `  ${'stddev'.padEnd(18)}${fixed(c.champion.stddev).padStart(14)}${fixed(c.challenger.stddev).padStart(14)}`,
    `  ${'pearson'.padEnd(18)}${fixed(c.pearson)}`,
    `  ${'spearman'.padEnd(18)}${fixed(c.spearman)}`,
    `  ${'mean |diff|'.padEnd(18)}${fixed(c.meanAbsDiff)}`,
    `  ${'label agreement'.padEnd(18)}${c.labelAgreement === null ? '- (the job stores no label)' : share(c.labelAgreement)}`,
    `  ${'top 10% overlap'.padEnd(18)}${share(c.top10Overlap)}`,
    `  ${'PSI'.padEnd(18)}${fixed(c.psi, 4)} (10 bins on the champion's deciles)`,
  ];
  return lines.join('\n') + '\n';
}
