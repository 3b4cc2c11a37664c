import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { Gauge, Registry } from 'prom-client';
import { installScore, type ScoreOptions, type ScoreRoute } from '../api/score.js';
import { batchJson, predictionJson } from '../api/serialize.js';
import type { StoredPrediction } from '../api/lookup.js';
import {
  checkAsOf,
  checkFallback,
  checkQuery,
  installJsonBody,
  keyProblem,
  parseBatchBody,
  type Limits,
} from '../api/validate.js';
import { HttpError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { NAME_RULE, isName } from '../names.js';
import type { BundleStore } from './read.js';

export interface BundleApi {
  app: FastifyInstance;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

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
export function buildBundleApi(bundle: BundleStore, log: Logger, options: { score?: ScoreOptions } = {}): BundleApi {
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
    logger: false,
    routerOptions: { maxParamLength: 3 * limits.maxKeyBytes + 64 },
    frameworkErrors: (err, _request, reply) => {
      const status = err.statusCode ?? 400;
      const error =
        status === 414 ? `the URL is too long: a key has at most ${limits.maxKeyBytes} bytes` : err.message.slice(0, 300);
      void (reply as unknown as FastifyReply).code(status).send({ error });
    },
  });
  installJsonBody(app);

  function checkJob(job: string): void {
    if (!isName(job)) throw new HttpError(400, `"${job.slice(0, 200)}" is not a job name: it must match ${NAME_RULE}`);
  }

  /** The one run a request reads, resolved as ServingPointers resolves a job with one published date. */
  function pointerFor(job: string, asOf: string | undefined, latestBefore: boolean) {
    if (job !== pointer.job) throw new HttpError(404, `job "${job}" has no published predictions`);
    if (asOf === undefined || asOf === pointer.date || (latestBefore && pointer.date <= asOf)) return pointer;
    throw new HttpError(404, `job "${job}" has no published run ${latestBefore ? 'on or before' : 'for'} ${asOf}`);
  }

  app.get<{ Params: { job: string; key: string }; Querystring: Record<string, unknown> }>(
    '/v1/predictions/:job/:key',
    async (request, reply) => {
      const { job, key } = request.params;
      checkQuery(request.query, ['asOf', 'fallback']);
      checkJob(job);
      const problem = keyProblem(key, limits);
      if (problem) throw new HttpError(400, `the key ${problem}`);
      const asOf = checkAsOf(request.query.asOf);
      const latestBefore = checkFallback(request.query.fallback);
      if (latestBefore && asOf === undefined)
        throw new HttpError(400, 'fallback goes with asOf (without asOf the newest date answers)');
      const p = pointerFor(job, asOf, latestBefore);
      const row = bundle.find(key);
      if (!row) {
        const message = `no prediction for key "${key}" in job "${job}" on ${p.date}`;
        const rejected = bundle.rejectReason(key);
        if (rejected !== undefined)
          return reply
            .code(404)
            .type(JSON_TYPE)
            .send(JSON.stringify({ error: message, rejected }));
        throw new HttpError(404, message);
      }
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

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0]!;
    const allow = ROUTES.find(([re]) => re.test(path))?.[1];
    if (allow) {
      return reply
        .code(405)
        .header('allow', allow)
        .send({ error: `${request.method} is not allowed on ${path.slice(0, 200)}; use ${allow}` });
    }
    return reply.code(404).send({ error: `no route ${request.method} ${path.slice(0, 200)}` });
  });

  app.setErrorHandler(async (err: FastifyError | HttpError, request, reply) => {
    const status = err.statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      const limit = request.routeOptions.bodyLimit ?? bodyLimit;
      const error =
        err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? 'the body must be JSON: send Content-Type: application/json'
          : err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
            ? `the body is larger than ${limit} bytes`
            : err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
              ? 'the body is empty; send {"keys": [...]}'
              : err.message;
      return reply.code(status).send({ error });
    }
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: err.message });
    log.error({ err: errorMessage(err), method: request.method, url: request.url.slice(0, 300) }, 'request failed');
    return reply.code(500).send({ error: 'internal error' });
  });

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
