import type { Command } from 'commander';
import { checkDate } from '../dates.js';
import type { Evaluation } from '../outcomes/evaluate.js';
import { formatCount, printJson, printTable, withContext } from './context.js';

/** `prescore evaluate <job> --from D --to D`: the served predictions against observed outcomes. */
export function evaluateCommand(program: Command): void {
  program
    .command('evaluate')
    .argument('<job>', 'job name')
    .description(
      "the served predictions of each date against the job's observed outcomes, per model version and date: " +
        'AUC, log loss, accuracy and calibration (classifiers), RMSE and MAE (regressors), matched keys',
    )
    .requiredOption('--from <date>', 'first date YYYY-MM-DD')
    .requiredOption('--to <date>', 'last date YYYY-MM-DD')
    .option('--json', 'machine-readable output (as GET /v1/jobs/:job/evaluation)')
    .action(async (name: string, opts: { from: string; to: string; json?: boolean }) => {
      const from = checkDate(opts.from, '--from');
      const to = checkDate(opts.to, '--to');
      const { loadJob } = await import('../definitions/load.js');
      const { evaluate } = await import('../outcomes/evaluate.js');
      await withContext(async ({ config, db }) => {
        const job = loadJob(config.jobsDir, name);
        const e = await evaluate(db.pool, { name, spec: job.spec }, { from, to });
        if (opts.json) return printJson(e);
        render(e);
      });
    });
}

const num = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? null : v.toFixed(digits));

function render(e: Evaluation): void {
  const write = (s: string): void => void process.stdout.write(s);
  write(
    `job ${e.job} (${e.kind}), ${e.from} to ${e.to}: ${e.runs.length} served date(s)` +
      (e.runs.length ? `, runs ${e.runs.map((r) => r.runId).join(', ')}` : '') +
      '\n',
  );
  if (e.rows.length === 0) {
    return write('no prediction matched an outcome (check outcomes.key and outcomes.date, and that the dates are published)\n');
  }
  if (e.kind === 'regressor') {
    return printTable(
      ['MODEL', 'DATE', 'MATCHED', 'RMSE', 'MAE', 'MEAN PREDICTED', 'MEAN OUTCOME'],
      e.rows.map((r) => [
        `${r.model.name} v${r.model.version}`,
        r.date ?? 'all',
        formatCount(r.matched),
        num(r.rmse, 6),
        num(r.mae, 6),
        num(r.meanPredicted, 6),
        num(r.meanOutcome, 6),
      ]),
    );
  }
  printTable(
    ['MODEL', 'DATE', 'MATCHED', 'POSITIVES', 'AUC', 'LOG LOSS', 'ACCURACY'],
    e.rows.map((r) => [
      `${r.model.name} v${r.model.version}`,
      r.date ?? 'all',
      formatCount(r.matched),
      formatCount(r.positives ?? 0),
      num(r.auc),
      num(r.logLoss),
      num(r.accuracy),
    ]),
  );
  for (const r of e.rows.filter((x) => x.date === null)) {
    write(`\ncalibration of ${r.model.name} v${r.model.version}, all dates:\n`);
    printTable(
      ['SCORE', 'COUNT', 'MEAN PREDICTED', 'OBSERVED RATE'],
      r.calibration!.map((b) => [
        `${b.lower.toFixed(1)}-${b.upper.toFixed(1)}`,
        formatCount(b.count),
        num(b.meanPredicted),
        num(b.observedRate),
      ]),
    );
  }
}
