import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Pool } from '../db/pool.js';
import { reportBreaches } from '../db/sql/profiles.js';
import { listRuns, type RunInfo } from '../db/sql/run-info.js';
import { RUN_STATUSES, type RunStatus } from '../db/sql/runs.js';
import { servingRunIds } from '../db/sql/serving.js';
import { HttpError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { NAME_RULE, isName } from '../names.js';
import { packageRoot } from '../paths.js';
import type { TokenCache } from './auth.js';
import type { ServingPointers } from './pointers.js';
import { checkQuery } from './validate.js';

/** One job file as the dashboard lists it (given by `prescore serve`, which reads the job files). */
export interface JobInfo {
  name: string;
  /** `name@alias` or `name@version`; null when the file does not load. */
  model: string | null;
  schedule: { cron: string; timezone: string } | null;
  /** The next fire of the schedule (ISO time) and the partition date it will score. */
  nextFireAt: string | null;
  nextDate: string | null;
  /** Why the job file does not load (such a job is not scheduled). */
  error: string | null;
}

/** The job files, read afresh on each call (a file edited or added shows on the next refresh). */
export type JobsProvider = () => Promise<JobInfo[]>;

/**
 * The page runs only the scripts and styles it is served with: no inline script or style, no
 * other origin, no framing. Data is put into the page as text nodes, never as markup.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** JSON is never a document: nothing in it runs even if a browser is tricked into rendering it. */
const DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

/**
 * The page's files: the HTML and CSS from the source tree, the script modules as tsc compiled
 * them next to this module (dist/src/api/ui/). Both directories are resolved from the package,
 * not the working directory, so the page is the same from a checkout, `dist/` or an install.
 */
function loadAssets(log: Logger): Map<string, { type: string; body: Buffer }> {
  const assets = new Map<string, { type: string; body: Buffer }>();
  const dirs = [path.join(packageRoot, 'src', 'api', 'ui'), fileURLToPath(new URL('./ui/', import.meta.url))];
  for (const dir of dirs) {
    let files: string[] = [];
    try {
      files = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const file of files) {
      const type = TYPES[path.extname(file)];
      if (type && !assets.has(file)) assets.set(file, { type, body: fs.readFileSync(path.join(dir, file)) });
    }
  }
  if (!assets.has('index.html') || !assets.has('app.js')) {
    log.warn({ dirs }, 'the dashboard files are missing (index.html, app.js): /ui answers 404');
  }
  return assets;
}

/** Headers for every JSON answer the page reads: never cached, never sniffed, never a document. */
export function dataHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('cache-control', 'no-store')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', DATA_CSP);
}

function stringParam(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `${name} must be given once`);
  return v;
}

function limitParam(query: Record<string, unknown>): number {
  const v = stringParam(query, 'limit');
  if (v === undefined) return 50;
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 1000) {
    throw new HttpError(400, `limit must be a whole number from 1 to 1000 (got "${v.slice(0, 20)}")`);
  }
  return Number(v);
}

export interface DashboardDeps {
  pool: Pool;
  log: Logger;
  tokens: TokenCache;
  pointers: ServingPointers;
  jobs?: JobsProvider;
}

/**
 * `/ui` (the page, public: it holds no data) and the JSON it reads, behind the same tokens as
 * the predictions: `GET /v1/jobs` and `GET /v1/runs`. A token limited to some jobs sees only
 * those jobs and their runs.
 */
export function installDashboard(app: FastifyInstance, deps: DashboardDeps): void {
  const { pool, log, tokens, pointers } = deps;
  const assets = loadAssets(log);

  const sendAsset = (reply: FastifyReply, file: string) => {
    const asset = assets.get(file);
    if (!asset)
      throw new HttpError(404, file === 'index.html' ? 'the dashboard is not installed' : `no file ${file.slice(0, 80)}`);
    return reply
      .type(asset.type)
      .header('content-security-policy', PAGE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-cache')
      .send(asset.body);
  };

  app.get<{ Querystring: Record<string, unknown> }>('/ui', { config: { access: 'public' } }, async (_request, reply) =>
    sendAsset(reply, 'index.html'),
  );
  app.get<{ Params: { file: string } }>('/ui/:file', { config: { access: 'public' } }, async (request, reply) => {
    const { file } = request.params;
    // `/ui/` is the page too, under its one name (relative links resolve from `/ui`).
    if (file === '') return reply.redirect('../ui', 308);
    if (file === 'index.html') return reply.redirect('../ui', 308);
    return sendAsset(reply, file);
  });

  app.get<{ Querystring: Record<string, unknown> }>('/v1/jobs', async (request, reply) => {
    checkQuery(request.query, []);
    const scope = tokens.scope(request.headers.authorization);
    let files: JobInfo[] = [];
    try {
      files = deps.jobs ? await deps.jobs() : [];
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'could not read the job files');
      throw new HttpError(503, 'the job files could not be read; see the server log');
    }
    const now = Date.now();
    const byName = new Map(files.map((j) => [j.name, j]));
    // A job that still serves published dates after its file went away is listed too.
    for (const name of pointers.jobNames()) {
      if (!byName.has(name))
        byName.set(name, {
          name,
          model: null,
          schedule: null,
          nextFireAt: null,
          nextDate: null,
          error: 'no job file: its published dates are still served',
        });
    }
    const jobs = [...byName.values()]
      .filter((j) => scope === null || scope.has(j.name))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((j) => {
        const p = pointers.resolve(j.name, undefined);
        const newest = p
          ? {
              date: p.date,
              runId: p.runId,
              model: p.model,
              publishedAt: new Date(p.publishedAt).toISOString(),
              ageSeconds: Math.max(0, Math.round((now - p.publishedAt) / 1000)),
            }
          : null;
        return { ...j, newest };
      });
    return dataHeaders(reply).send({ now: new Date(now).toISOString(), jobs });
  });

  app.get<{ Querystring: Record<string, unknown> }>('/v1/runs', async (request, reply) => {
    const query = request.query ?? {};
    checkQuery(query, ['job', 'status', 'limit']);
    const job = stringParam(query, 'job');
    if (job !== undefined && !isName(job)) {
      throw new HttpError(400, `job "${job.slice(0, 200)}" is not a job name: it must match ${NAME_RULE}`);
    }
    const status = stringParam(query, 'status');
    if (status !== undefined && !(RUN_STATUSES as readonly string[]).includes(status)) {
      throw new HttpError(400, `status must be one of ${RUN_STATUSES.join(', ')} (got "${status.slice(0, 40)}")`);
    }
    const limit = limitParam(query);
    if (job !== undefined) tokens.check(request.headers.authorization, job);
    const scope = tokens.scope(request.headers.authorization);
    let runs: (RunInfo & { serving: boolean; breaches: unknown[] | null })[];
    try {
      const list = await listRuns(pool, {
        job,
        jobs: scope === null ? undefined : [...scope],
        status: status as RunStatus | undefined,
        limit,
      });
      const ids = list.map((r) => r.id);
      const [serving, breaches] = await Promise.all([servingRunIds(pool, ids), reportBreaches<unknown>(pool, ids)]);
      runs = list.map((r) => ({ ...r, serving: serving.has(r.id), breaches: breaches.get(r.id) ?? null }));
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'run listing failed');
      throw new HttpError(503, 'the database is unavailable; retry later');
    }
    return dataHeaders(reply).send({ runs });
  });
}
