import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';
import { HttpError, errorMessage } from '../errors.js';
import { InferencePool } from '../inference/pool.js';
import type { Logger } from '../log.js';
import { ScoreBatcher } from '../score/batcher.js';
import { scoreJson, type ScoredRow, type ScoringModel } from '../score/model.js';
import { parseScoreBody } from '../score/rows.js';
import { checkJob } from './http.js';
import { checkQuery } from './validate.js';

export interface ScoreOptions {
  /** How long sent rows wait for others to share their inference call (ms, default 1); 0: one call per request. */
  batchWindowMs?: number;
  /** Rows of one inference call at most (default 4096). */
  maxBatchRows?: number;
  /** Rows in one request (default 1000). */
  maxRows?: number;
  /** Body limit of POST /v1/score (default 4 MiB: 1000 rows of a few dozen features). */
  bodyLimitBytes?: number;
  /**
   * Inference threads, started with the first request (default 2: each then gets half the cores
   * as intra-op threads; on 2 cores, one each, which measured 9.2k rows/s of the MLP against
   * 5.5k for one thread of two intra-op threads, whose spinning takes the event loop's core).
   */
  inferenceThreads?: number;
}

export interface ScoreDeps {
  /** The model, features and mapping a job scores with now; throws HttpError (404 unknown job, ...). */
  model(job: string): Promise<ScoringModel>;
  registry: Registry;
  log: Logger;
  keyProblem(key: string): string | null;
}

export interface ScoreRoute {
  /** The inference threads (started on first use), which compute on miss shares. */
  inference(): InferencePool;
  /** Fails rows still waiting and stops the inference threads. Idempotent. */
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * `POST /v1/score/:job`: scores the features the caller sends with the job's model and
 * output mapping, stores nothing. Inference runs in worker threads (sessions cached per model
 * sha256 there); rows of requests arriving together share one inference call (ScoreBatcher).
 */
export function installScore(app: FastifyInstance, deps: ScoreDeps, options: ScoreOptions = {}): ScoreRoute {
  const registers = [deps.registry];
  const batches = new Counter({
    name: 'prescore_score_batches_total',
    help: 'inference calls of POST /v1/score: requests arriving together share one',
    labelNames: ['prescore_job'],
    registers,
  });
  const scored = new Counter({
    name: 'prescore_score_rows_total',
    help: 'rows scored by POST /v1/score',
    labelNames: ['prescore_job'],
    registers,
  });
  const batchRows = new Histogram({
    name: 'prescore_score_batch_rows',
    help: 'rows per inference call of POST /v1/score',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 1000, 4096],
    registers,
  });
  let inference: InferencePool | undefined;
  const threads = options.inferenceThreads ?? 2;
  const pool = () => (inference ??= new InferencePool(threads));
  const batcher = new ScoreBatcher(pool, {
    windowMs: options.batchWindowMs ?? 1,
    maxRows: options.maxBatchRows ?? 4096,
    maxInFlight: threads,
    onBatch: (job, rows) => {
      batches.inc({ prescore_job: job });
      scored.inc({ prescore_job: job }, rows);
      batchRows.observe(rows);
    },
  });
  const limits = { maxRows: options.maxRows ?? 1000, keyProblem: deps.keyProblem };

  app.post<{ Params: { job: string }; Querystring: Record<string, unknown> }>(
    '/v1/score/:job',
    { bodyLimit: options.bodyLimitBytes ?? 4 * 1024 * 1024 },
    async (request, reply) => {
      const { job } = request.params;
      checkQuery(request.query, []);
      checkJob(job);
      const model = await deps.model(job);
      const { keys, values } = parseScoreBody(request.body, model.features, model.input.type, limits);
      let rows: ScoredRow[];
      try {
        rows = await batcher.score(model, values, keys.length);
      } catch (err) {
        deps.log.error({ err: errorMessage(err), job, model: `${model.name}@${model.version}` }, 'scoring failed');
        throw new HttpError(500, `model ${model.name} v${model.version} failed on the rows: ${errorMessage(err).split('\n')[0]}`);
      }
      return reply.type(JSON_TYPE).send(scoreJson(model, keys, rows));
    },
  );

  let closing: Promise<void> | undefined;
  return {
    inference: pool,
    close: () =>
      (closing ??= (async () => {
        batcher.close();
        await inference?.close();
      })()),
  };
}
