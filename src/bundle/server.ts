import Fastify, { type FastifyInstance } from 'fastify';
import { Gauge, Registry } from 'prom-client';
import { installScore, type ScoreOptions, type ScoreRoute } from '../api/score.js';
import { batchJson, predictionJson } from '../api/serialize.js';
import type { StoredPrediction } from '../api/lookup.js';
import {
  checkJob,
  frameworkErrors,
  installErrorHandlers,
  JSON_TYPE,
  parsePredictionGet,
  REQUEST_TIMEOUT_MS,
  sendMissingKey,
  slowClientLimits,
} from '../api/http.js';
import { checkQuery, installJsonBody, keyProblem, parseBatchBody, type Limits } from '../api/validate.js';
import { HttpError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BundleStore } from './read.js';

export interface BundleApi {
  app: FastifyInstance;
  close(): Promise<void>;
}

const ROUTES: [RegExp, string][] = [
  [/^\/v1\/predictions\/[^/]+\/[^/]+$/, 'GET, HEAD'],
  [/^\/v1\/predictions\/[^/]+$/, 'POST'],
  [/^\/v1\/score\/[^/]+$/, 'POST'],
  [/^\/(healthz|readyz|metrics)$/, 'GET, HEAD'],
];

/**
 * `prescore serve --bundle DIR`: the read API (GET and POST /v1/predictions, the same bodies
 * and errors as `prescore serve`) and POST /v1/score, answered from one verified bundle in
 * memory, with no database. The bundle holds one job and one date: other jobs are unknown,
 * other dates have no published run. There are no tokens (the bundle's data is on the
 * machine already): listen on a private address.
 */
export function buildBundleApi(
  bundle: BundleStore,
  log: Logger,
  options: { score?: ScoreOptions; requestTimeoutMs?: number } = {},
): BundleApi {
  const limits: Limits = { maxKeys: 1000, maxKeyBytes: 512 };
  const bodyLimit = 1024 * 1024;
  const { pointer } = bundle;
  const registry = new Registry();
  new Gauge({
    name: 'prescore_bundle_info',
    help: 'the bundle served: job, date, run and model version',
    labelNames: ['prescore_job', 'date', 'run_id', 'model'],
    registers: [registry],
  }).set(
    {
      prescore_job: pointer.job,
      date: pointer.date,
      run_id: pointer.runId,
      model: `${pointer.model.name}@${pointer.model.version}`,
    },
    1,
  );
  const app = Fastify({
    bodyLimit,
    ...slowClientLimits(options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS),
    logger: false,
    routerOptions: { maxParamLength: 3 * limits.maxKeyBytes + 64 },
    frameworkErrors: frameworkErrors(limits),
  });
  installJsonBody(app);

  /** The one run a request reads, resolved as ServingPointers resolves a job with one published date. */
  function pointerFor(job: string, asOf: string | undefined, latestBefore: boolean) {
    if (job !== pointer.job) throw new HttpError(404, `job "${job}" has no published predictions`);
    if (asOf === undefined || asOf === pointer.date || (latestBefore && pointer.date <= asOf)) return pointer;
    throw new HttpError(404, `job "${job}" has no published run ${latestBefore ? 'on or before' : 'for'} ${asOf}`);
  }

  app.get<{ Params: { job: string; key: string }; Querystring: Record<string, unknown> }>(
    '/v1/predictions/:job/:key',
    async (request, reply) => {
      const { job, key, asOf, latestBefore } = parsePredictionGet(request.params, request.query, limits);
      const p = pointerFor(job, asOf, latestBefore);
      const row = bundle.find(key);
      if (!row) return sendMissingKey(reply, job, key, p.date, bundle.rejectReason(key));
      return reply.type(JSON_TYPE).send(predictionJson(p, key, row));
    },
  );

  app.post<{ Params: { job: string }; Querystring: Record<string, unknown> }>('/v1/predictions/:job', async (request, reply) => {
    const { job } = request.params;
    checkQuery(request.query, []);
    checkJob(job);
    const { keys, asOf, latestBefore } = parseBatchBody(request.body, limits);
    const p = pointerFor(job, asOf, latestBefore);
    const rows = new Map<string, StoredPrediction>();
    for (const k of keys) {
      const r = bundle.find(k);
      if (r) rows.set(k, r);
    }
    return reply.type(JSON_TYPE).send(batchJson(p, keys, rows).body);
  });

  const score: ScoreRoute = installScore(
    app,
    {
      model: async (job) => {
        if (job !== pointer.job) throw new HttpError(404, `job "${job}" is not in this bundle (it holds job "${pointer.job}")`);
        const unsupported = bundle.scoreUnsupported('POST /v1/score');
        if (unsupported) throw new HttpError(409, unsupported);
        return bundle.model;
      },
      registry,
      log,
      keyProblem: (key) => keyProblem(key, limits),
    },
    options.score,
  );

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async () => ({ ready: true }));
  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  installErrorHandlers(app, { routes: ROUTES, bodyLimit, log });

  let closing: Promise<void> | undefined;
  return {
    app,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await score.close();
      })()),
  };
}
