import Fastify, { type FastifyInstance } from 'fastify';
import type { Pool } from '../db/pool.js';
import { readiness } from './health.js';
import type { ApiMetrics } from './metrics.js';

/**
 * The ops app: /healthz, /readyz (with its reason) and /metrics without tokens, for a port
 * kept off the public network (`prescore serve --ops-port`). It serves no data.
 */
export function buildOps(pool: Pool, metrics: ApiMetrics, requestTimeout: number): FastifyInstance {
  const ops = Fastify({ logger: false, requestTimeout, http: { headersTimeout: requestTimeout } });
  ops.get('/healthz', async () => ({ status: 'ok' }));
  ops.get('/readyz', async (_request, reply) => {
    const r = await readiness(pool);
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  ops.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  ops.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}` }),
  );
  return ops;
}
