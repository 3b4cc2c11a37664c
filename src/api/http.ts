import type { FastifyError, FastifyInstance, FastifyReply, FastifyServerOptions } from 'fastify';
import { HttpError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { NAME_RULE, isName } from '../names.js';
import { checkAsOf, checkFallback, checkQuery, keyProblem, type Limits } from './validate.js';

/**
 * The HTTP plumbing both read servers share (`prescore serve` from PostgreSQL and
 * `prescore serve --bundle` from a bundle), so they parse requests and say errors the same way.
 */

export const JSON_TYPE = 'application/json; charset=utf-8';

/** How long a client may take to send a whole request (headers and body) by default. */
export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * A client that sends its headers or body slowly (or never) is cut off: node checks open
 * connections every connectionsCheckingInterval against these.
 */
export function slowClientLimits(requestTimeout: number): {
  requestTimeout: number;
  http: { headersTimeout: number; connectionsCheckingInterval: number };
} {
  return {
    requestTimeout,
    http: {
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, requestTimeout / 4)),
    },
  };
}

/** Errors fastify raises before routing (a malformed percent-encoding): the same JSON shape. */
export function frameworkErrors(limits: Limits): NonNullable<FastifyServerOptions['frameworkErrors']> {
  return (err, _request, reply) => {
    const status = err.statusCode ?? 400;
    const error =
      status === 414 ? `the URL is too long: a key has at most ${limits.maxKeyBytes} bytes` : err.message.slice(0, 300);
    void (reply as unknown as FastifyReply).code(status).send({ error });
  };
}

export function checkJob(job: string): void {
  if (!isName(job)) throw new HttpError(400, `"${job.slice(0, 200)}" is not a job name: it must match ${NAME_RULE}`);
}

/** GET /v1/predictions/:job/:key, checked: the job, the key, asOf and fallback. */
export function parsePredictionGet(
  params: { job: string; key: string },
  query: Record<string, unknown>,
  limits: Limits,
): { job: string; key: string; asOf: string | undefined; latestBefore: boolean } {
  const { job, key } = params;
  checkQuery(query, ['asOf', 'fallback']);
  checkJob(job);
  const problem = keyProblem(key, limits);
  if (problem) throw new HttpError(400, `the key ${problem}`);
  const asOf = checkAsOf(query.asOf);
  const latestBefore = checkFallback(query.fallback);
  if (latestBefore && asOf === undefined)
    throw new HttpError(400, 'fallback goes with asOf (without asOf the newest date answers)');
  return { job, key, asOf, latestBefore };
}

/** The 404 of a key the run has no prediction for; a key the run read but rejected says why. */
export function sendMissingKey(reply: FastifyReply, job: string, key: string, date: string, rejected: string | undefined) {
  const message = `no prediction for key "${key}" in job "${job}" on ${date}`;
  if (rejected === undefined) throw new HttpError(404, message);
  return reply
    .code(404)
    .type(JSON_TYPE)
    .send(JSON.stringify({ error: message, rejected }));
}

/**
 * 405 (with Allow) for a path that exists under another method, 404 otherwise; fastify's own
 * 4xx said the way the API says its errors; anything else a logged 500.
 */
export function installErrorHandlers(
  app: FastifyInstance,
  options: { routes: readonly [RegExp, string][]; bodyLimit: number; log: Logger },
): void {
  const { routes, bodyLimit, log } = options;
  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0]!;
    const allow = routes.find(([re]) => re.test(path))?.[1];
    if (allow)
      return reply
        .code(405)
        .header('allow', allow)
        .send({ error: `${request.method} is not allowed on ${path.slice(0, 200)}; use ${allow}` });
    return reply.code(404).send({ error: `no route ${request.method} ${path.slice(0, 200)}` });
  });

  app.setErrorHandler(async (err: FastifyError | HttpError, request, reply) => {
    const status = err.statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      if (status === 401) reply.header('www-authenticate', 'Bearer');
      return reply.code(status).send({ error: clientMessage(err, request.routeOptions.bodyLimit ?? bodyLimit) });
    }
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: err.message });
    log.error({ err: errorMessage(err), method: request.method, url: request.url.slice(0, 300) }, 'request failed');
    return reply.code(500).send({ error: 'internal error' });
  });
}

/** Fastify's own 4xx messages, said the way the API's are. */
function clientMessage(err: { code?: string; message: string }, bodyLimit: number): string {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'the body must be JSON: send Content-Type: application/json';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `the body is larger than ${bodyLimit} bytes`;
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'the body is empty; send {"keys": [...]}';
    default:
      return err.message;
  }
}
