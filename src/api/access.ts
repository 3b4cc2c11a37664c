import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TokenCache } from './auth.js';

/**
 * Who may call a route. `data` (the default, also for unknown routes): a token that may read
 * the route's job when tokens are on. `ops` (/metrics, naming every job): a token for every
 * job when tokens are on; the ops listener (`serve --ops-port`) serves it without one.
 * `public` (/healthz, /readyz): anyone, with details only for a valid token.
 */
export type Access = 'data' | 'ops' | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

export interface RouteInfo {
  method: string;
  url: string;
  access: Access;
}

/**
 * Collects the app's routes and installs the access check. Call before any route is added.
 *
 * Decided on the route fastify matched (its config), never on the raw request target: a
 * target may be an absolute URL (`GET http://host/v1/...`), which the router strips. Unknown
 * routes count as `data`, so whatever is added later is closed until it says otherwise.
 */
export function installAccess(app: FastifyInstance, tokens: TokenCache): RouteInfo[] {
  const routes: RouteInfo[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, access: route.config?.access ?? 'data' });
  });
  // Callback-style hook: on the hot path, a promise per hook per request is measurable.
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    const access = request.routeOptions.config?.access ?? 'data';
    if (access === 'public') return done();
    try {
      const job = access === 'data' ? (request.params as { job?: string } | undefined)?.job : undefined;
      tokens.check(request.headers.authorization, job, access === 'ops');
      done();
    } catch (err) {
      done(err as Error);
    }
  });
  return routes;
}
