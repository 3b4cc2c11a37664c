import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { installAccess, type RouteInfo } from './access.js';
import { buildOps } from './ops.js';
import type pg from 'pg';
import type { Pool } from '../db/pool.js';
import { HttpError, LookupUnavailable, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { PUBLISH_CHANNEL } from '../db/sql/serving.js';
import { runReport } from './reports.js';
import { installEvaluation, type EvaluationProvider } from './evaluation.js';
import { dataHeaders, installDashboard, type JobsProvider } from './dashboard.js';
import { rejectReason } from '../db/sql/rejects.js';
import { Admission } from './admission.js';
import { TokenCache, type AuthMode } from './auth.js';
import { readiness } from './health.js';
import { Listener } from './listener.js';
import { Lookup, type StoredPrediction } from './lookup.js';
import { RunCache, type MemoryRun } from './memory.js';
import { Misses, type Completed, type MissOptions } from './miss.js';
import { checkWait, LateArrivals, sendPending, type LateOptions } from './late.js';
import { LATE_CHANNEL } from '../db/sql/late.js';
import { PinnedRuns } from '../score/pinned.js';
import { batchJson, predictionJson } from './serialize.js';
import { ApiMetrics } from './metrics.js';
import { ServingPointers, type Pointer } from './pointers.js';
import { installScore, type ScoreOptions } from './score.js';
import { JobSplits } from './job-splits.js';
import { batchVariant, checkVariantParam, Variants } from './variants.js';
import { CurrentModels } from '../score/current.js';
import { ModelBytes } from '../models/bytes.js';
import { TOKENS_CHANNEL } from './tokens.js';
import {
  checkJob,
  frameworkErrors,
  installErrorHandlers,
  JSON_TYPE,
  parsePredictionGet,
  REQUEST_TIMEOUT_MS,
  sendMissingKey,
  slowClientLimits,
} from './http.js';
import { checkQuery, installJsonBody, keyProblem, parseBatchBody, type Limits } from './validate.js';

export interface ApiOptions {
  /** For the LISTEN connection; default: the pool's own connection options. */
  connection?: pg.ClientConfig;
  /** Full reload of pointers and tokens, the safety net under LISTEN (default 30). */
  refreshSeconds?: number;
  /** Request body limit (default 1 MiB). */
  bodyLimitBytes?: number;
  /** Keys per POST (default 1000). */
  maxKeys?: number;
  /** UTF-8 bytes per key (default 512). */
  maxKeyBytes?: number;
  /** Lookup queries in flight at once (default: the pool's size). */
  maxInFlight?: number;
  /** Keys merged into one lookup query at most (default 256). */
  maxBatchKeys?: number;
  /** Add Node process metrics (CPU, memory, event loop lag) to /metrics. */
  processMetrics?: boolean;
  /** Whether requests need a token (default `auto`: once the first token exists). */
  auth?: AuthMode;
  /** A lookup not answered within this long gets 503 (default 3000). */
  lookupTimeoutMs?: number;
  /** Keys waiting for or in lookup queries at most, and as many again in batches waiting their turn; beyond it, 503 at once (default 200,000). */
  maxQueuedKeys?: number;
  /**
   * Keys of batches (POSTs of more than a few keys) worked on at once (default 1000); the other
   * batches wait their turn. A batch costs the event loop in proportion to its keys (rows to
   * parse, JSON to write): a bound on them is a bound on how long a single GET waits.
   */
  maxBulkKeys?: number;
  /** A request whose headers and body have not arrived within this long is cut off (default 10,000). */
  requestTimeoutMs?: number;
  /**
   * Bytes of published predictions kept in memory (default 0: off; `prescore serve` turns it
   * on). The newest run of each job and every run a publish or rollback names are loaded in
   * the background; least recently used runs go first when the budget is full.
   */
  cacheBytes?: number;
  /** Rows per page query while loading a run into memory (default 5,000). */
  cachePageRows?: number;
  /** Requests for a serving run not in memory after which it is loaded too (default 200). */
  cacheHotRequests?: number;
  /** The job files, for the dashboard's `GET /v1/jobs` (without it: the jobs with published runs). */
  jobs?: JobsProvider;
  /** `GET /v1/jobs/:job/evaluation` (given by `prescore serve`, which reads the job files; without it: 404). */
  evaluation?: EvaluationProvider;
  /** POST /v1/score: micro-batching, limits, inference threads, and how long a resolved model alias answers. */
  score?: ScoreOptions & { modelTtlMs?: number };
  /** Compute on miss (jobs with `serving.onMiss: "compute"`): keys per request, source queries at once. */
  miss?: Pick<MissOptions, 'maxKeys' | 'maxInFlight' | 'maxBatchKeys' | 'maxQueuedKeys'>;
  /** Enqueue on miss (jobs with `serving.onMiss: "enqueue"`): the workers' queue, limits; without it such misses stay missing. */
  late?: LateOptions;
  /** A/B serving: the jobs dir whose `serving.split`s answer (`prescore serve`: PRESCORE_JOBS_DIR); without it, no splits. */
  variants?: { jobsDir: string; pollMs?: number };
}

export interface Api {
  app: FastifyInstance;
  /** /healthz, /readyz and /metrics without tokens, for a private port (`serve --ops-port`). */
  ops: FastifyInstance;
  /** Every route of `app`, as registered: what the auth tests enumerate. */
  routes: RouteInfo[];
  pointers: ServingPointers;
  /** The runs held in memory. */
  cache: RunCache;
  tokens: TokenCache;
  listener: Listener;
  /** Stops listening (both apps), drains in-flight requests, closes the LISTEN connection. Idempotent. */
  close(): Promise<void>;
}

/** Requests of at most this many keys are point reads: they never wait behind batches. */
const POINT_KEYS = 16;
/** While point reads arrived within this long, batches from memory yield to them (see bulkTurn). */
const POINT_WINDOW_MS = 50;
/**
 * A batch key's share of the event loop while point reads arrive, ms: twice what a key costs in
 * all (about 3.5 µs: parse, look up, serialize, write). Measured, 10 GET connections beside 100
 * POSTing 1000 keys from memory: at 0 the GETs got 1,491 req/s with p99 27 ms, at 3.5 µs 4,391
 * and 15 ms, at 7 µs 9,356 and 6 ms (17,020 and 4 ms alone), the batches 152, 219 and 164 req/s.
 */
const BULK_KEY_MS = 0.007;

/** The routes that exist, for 405 versus 404. */
const ROUTES: [RegExp, string][] = [
  [/^\/v1\/predictions\/[^/]+\/[^/]+$/, 'GET, HEAD'],
  [/^\/v1\/predictions\/[^/]+$/, 'POST'],
  [/^\/v1\/score\/[^/]+$/, 'POST'],
  [/^\/(healthz|readyz|metrics)$/, 'GET, HEAD'],
  [/^\/v1\/(jobs|runs)$/, 'GET, HEAD'],
  [/^\/v1\/runs\/[^/]+\/report$/, 'GET, HEAD'],
  [/^\/v1\/jobs\/[^/]+\/evaluation$/, 'GET, HEAD'],
  [/^\/ui(\/[^/]*)?$/, 'GET, HEAD'],
];

/**
 * The read API as a fastify app, answering only from published runs. Loads the serving
 * pointers and the token set before it returns (and throws when it cannot), then keeps them
 * fresh through LISTEN and a periodic reload. The caller owns the pool and listens:
 * `await api.app.listen({ port, host })`.
 */
export async function buildApi(pool: Pool, log: Logger, options: ApiOptions = {}): Promise<Api> {
  const bodyLimit = options.bodyLimitBytes ?? 1024 * 1024;
  const limits: Limits = { maxKeys: options.maxKeys ?? 1000, maxKeyBytes: options.maxKeyBytes ?? 512 };
  const cache = new RunCache(pool, log, {
    budgetBytes: options.cacheBytes ?? 0,
    pageRows: options.cachePageRows,
    hotRequests: options.cacheHotRequests,
    onLoad: (outcome) => metrics.cacheLoad(outcome),
  });
  // Runs a publish or rollback announced (run id → job): loaded into memory once a reload of
  // their job's pointers names them.
  const announced = new Map<string, string>();
  const pointers = new ServingPointers(pool, log, (jobs) => {
    if (!cache.enabled) return;
    cache.retain((runId) => pointers.serves(runId));
    for (const pointer of pointers.newestRuns()) cache.want(pointer);
    for (const [runId, job] of announced) {
      if (jobs && !jobs.includes(job)) continue;
      announced.delete(runId);
      const pointer = pointers.servingRun(runId);
      if (pointer) cache.want(pointer);
    }
  });
  /*
   * When memory may answer. A run's copy is right for that run forever; what can be wrong is
   * the choice of run, which is the pointer map's. So memory answers a job only while that map
   * is as fresh as LISTEN can make it: the LISTEN connection is up and a full reload followed
   * its last (re)connect; no reload of the job is pending since a publish, rollback or retention
   * notification named it (from the moment the notification arrives, the job's requests go to
   * PostgreSQL until the new pointers are in); and the job's last reload did not fail.
   */
  let reconnected = false;
  let holdAll = 0;
  const holds = new Map<string, number>();
  const stale = new Set<string>();
  function hold(job: string | undefined): Promise<void> {
    if (job === undefined) holdAll++;
    else holds.set(job, (holds.get(job) ?? 0) + 1);
    return pointers
      .reload(job)
      .then(
        () => {
          if (job === undefined) stale.clear();
          else stale.delete(job);
        },
        () => {
          if (job === undefined) reconnected = false;
          else stale.add(job);
        },
      )
      .finally(() => {
        if (job === undefined) holdAll--;
        else {
          const n = holds.get(job)! - 1;
          if (n === 0) holds.delete(job);
          else holds.set(job, n);
        }
      });
  }
  const tokens = new TokenCache(pool, log, options.auth);
  const listener = new Listener({
    connection: options.connection ?? (pool.options as pg.ClientConfig),
    channels: [PUBLISH_CHANNEL, TOKENS_CHANNEL, LATE_CHANNEL],
    log,
    onNotification: (channel, payload) => {
      if (channel === LATE_CHANNEL) late?.notified(payload);
      else if (channel === TOKENS_CHANNEL) tokens.reload().catch(() => undefined);
      else {
        const published = parsePublished(payload);
        if (published.runId && published.job && cache.enabled) announced.set(published.runId, published.job);
        void hold(published.job);
      }
    },
    onConnect: async () => {
      // Whatever was announced while nobody listened is found only by this full reload.
      reconnected = false;
      await Promise.all([pointers.reload(), tokens.reload()]);
      reconnected = true;
      stale.clear();
    },
  });
  /**
   * The run's copy in memory, when memory may answer for the pointer's job (see above). Only the
   * lookup itself (`find`) counts a request towards loading a run; the hot path's first look,
   * and the reject probe after a lookup, do not (`count` false), so one request counts once.
   */
  function memoryFor(pointer: Pointer, count = true): MemoryRun | undefined {
    if (!cache.enabled || !reconnected || holdAll > 0 || !listener.connected) return undefined;
    if (holds.size > 0 && holds.has(pointer.job)) return undefined;
    if (stale.size > 0 && stale.has(pointer.job)) return undefined;
    return count ? cache.get(pointer) : cache.peek(pointer.runId);
  }
  /**
   * The rows of `keys` in the pointer's run: from memory when it may answer, else PostgreSQL
   * (a layer's read through to its base: the pointer carries it).
   */
  function find(pointer: Pointer, keys: string[]): Promise<Map<string, StoredPrediction>> {
    const memory = memoryFor(pointer);
    if (memory) {
      metrics.cacheHits(keys.length);
      return Promise.resolve(memory.find(keys));
    }
    if (cache.enabled) metrics.cacheMisses(keys.length);
    return lookup.find(pointer, keys);
  }
  const metrics = new ApiMetrics(pointers, { listening: () => listener.connected }, { ...options, cache });
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 3000;
  const maxQueuedKeys = options.maxQueuedKeys ?? 200_000;
  const admission = new Admission(options.maxBulkKeys ?? 1000, maxQueuedKeys, lookupTimeoutMs);
  const lookup = new Lookup(pool, {
    maxInFlight: options.maxInFlight ?? pool.options.max ?? 10,
    maxBatchKeys: options.maxBatchKeys ?? 256,
    timeoutMs: lookupTimeoutMs,
    maxQueuedKeys,
    pointKeys: POINT_KEYS,
    onQuery: (keys) => metrics.lookupQuery(keys),
  });
  /*
   * Batches answered from memory never wait on I/O, so nothing would stop them from taking the
   * whole event loop while single GETs wait behind them (measured: 10 GET connections beside 100
   * POSTing 1000 keys, GET p50 0 -> 560 ms when batches ran back to back). Each gets a turn of
   * the loop of its own, and while point reads keep arriving, a batch waits as long as the one
   * before it cost: batches get at most about half the loop, as PostgreSQL's lane gives them one
   * connection. Alone, batches run at full speed.
   */
  let lastPointAt = 0;
  let bulkResumeAt = 0;
  function bulkTurn(): Promise<void> {
    const now = performance.now();
    const wait = now - lastPointAt < POINT_WINDOW_MS ? bulkResumeAt - now : 0;
    return new Promise((resolve) => (wait >= 1 ? setTimeout(resolve, wait) : setImmediate(resolve)));
  }
  function bulkSpent(ms: number): void {
    bulkResumeAt = performance.now() + ms;
  }
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const app = Fastify({
    bodyLimit,
    ...slowClientLimits(requestTimeout),
    // Keys travel percent-encoded in the path: up to 3 characters per byte.
    routerOptions: { maxParamLength: 3 * limits.maxKeyBytes + 64 },
    logger: false,
    frameworkErrors: frameworkErrors(limits),
  });

  const splits = options.variants && new JobSplits(options.variants.jobsDir, log, options.variants.pollMs);
  const variants = new Variants(pool, log, splits, {
    registry: metrics.registry,
    timeoutMs: lookupTimeoutMs,
    current: (p) => pointers.current(p.job, p.date),
  });

  interface Asked {
    asOf: string | undefined;
    latestBefore: boolean;
  }

  /** The predictions of `keys` from exactly one run, each from the variant its split or `?variant=` selects. */
  async function answer(first: Pointer, keys: string[], asked: Asked, variant?: string): Promise<Completed> {
    const plan = variants.plan(first.job, variant);
    const found = await championRows(first, keys, asked);
    return plan ? variants.apply(plan, found, keys, (p) => championRows(p, keys, asked)) : found;
  }

  /** The champion's predictions of `keys` from exactly one run: the pointer's, or its replacement's. */
  async function championRows(first: Pointer, keys: string[], asked: Asked): Promise<Completed> {
    let pointer = first;
    try {
      for (let attempt = 0; ; attempt++) {
        const rows = await find(pointer, keys);
        if (attempt === 2 || keys.every((k) => rows.has(k))) return await misses.complete(pointer, keys, rows);
        // Missing keys: genuine, unless a publish replaced (and may have dropped) this run after
        // the request resolved it. Then the whole request is answered again from the new run.
        let fresh = await pointers.current(pointer.job, pointer.date);
        if (!fresh) {
          // The date stopped being served meanwhile (retention dropped it): the request is
          // resolved again as it would be now, which may be a 404 for the date.
          await pointers.reload(pointer.job);
          fresh = pointerFor(pointer.job, asked.asOf, asked.latestBefore);
        }
        if (fresh.runId === pointer.runId) return await misses.complete(pointer, keys, rows);
        pointer = fresh;
      }
    } catch (err) {
      if (err instanceof HttpError) throw err;
      // Nothing the client did: the database is down, hanging, restarting or refusing connections.
      if (err instanceof LookupUnavailable && err.overloaded) {
        throw new HttpError(503, 'too many lookups are waiting for the database; retry later');
      }
      if (closing) throw new HttpError(503, 'the API is shutting down; retry on another instance');
      log.error({ err: errorMessage(err), job: first.job }, 'prediction lookup failed');
      throw new HttpError(503, 'the database is unavailable; retry later');
    }
  }

  function pointerFor(job: string, asOf: string | undefined, latestBefore = false): Pointer {
    const pointer = pointers.resolve(job, asOf, latestBefore);
    if (pointer) return pointer;
    if (!pointers.hasJob(job)) throw new HttpError(404, `job "${job}" has no published predictions`);
    throw new HttpError(404, `job "${job}" has no published run ${latestBefore ? 'on or before' : 'for'} ${asOf}`);
  }

  const routes = installAccess(app, tokens);
  installJsonBody(app);
  installDashboard(app, { pool, log, tokens, pointers, jobs: options.jobs });
  const ops = buildOps(pool, metrics, requestTimeout);
  // One copy of each model version's bytes for the score route and compute on miss.
  const modelBytes = new ModelBytes(pool);
  const models = new CurrentModels(pool, log, { ttlMs: options.score?.modelTtlMs }, modelBytes);
  const score = installScore(
    app,
    { model: (job) => models.get(job), registry: metrics.registry, log, keyProblem: (key) => keyProblem(key, limits) },
    options.score,
  );
  const late =
    options.late &&
    new LateArrivals(pool, log, { ...options.late, timeoutMs: lookupTimeoutMs }, (job, n) => metrics.lateEnqueued(job, n));
  const misses = new Misses(
    {
      pool,
      late,
      runs: new PinnedRuns(pool, modelBytes),
      inference: () => score.inference(),
      log,
      onQuery: (job, keys) => metrics.missQuery(job, keys),
    },
    { ...options.miss, timeoutMs: lookupTimeoutMs },
  );

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    metrics.request(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.get<{ Params: { job: string; key: string }; Querystring: Record<string, unknown> }>(
    '/v1/predictions/:job/:key',
    async (request, reply) => {
      const { variant: variantParam, wait, ...query } = request.query;
      const { job, key, asOf, latestBefore } = parsePredictionGet(request.params, query, limits);
      const variant = checkVariantParam(variantParam);
      const waitMs = checkWait(wait);
      const first = pointerFor(job, asOf, latestBefore);
      lastPointAt = performance.now();
      // The hot path: the run is in memory and has the key, and no split or variant chooses another model.
      const hit = variants.plan(job, variant) ? undefined : memoryFor(first, false)?.get(key);
      if (hit) {
        metrics.cacheHits(1);
        metrics.hits(job, 1);
        return reply.type(JSON_TYPE).send(predictionJson(first, key, hit));
      }
      const found = await answer(first, [key], { asOf, latestBefore }, variant);
      const { pointer, rows } = found;
      let { rejected: reasons } = found;
      let row = rows.get(key);
      if (!row && found.pending?.includes(key)) {
        // Enqueue on miss: answered once a worker stores it (within ?wait=), else 202.
        const settled = await late!.wait(pointer.runId, key, waitMs);
        if (!settled) return sendPending(reply, pointer, key);
        row = settled.row;
        reasons = new Map(settled.rejected === undefined ? [] : [[key, settled.rejected]]);
      }
      if (!row) {
        metrics.misses(job, 1);
        // One indexed probe, misses only (none when the run is in memory; compute on miss has probed already).
        const memory = reasons ? undefined : memoryFor(pointer, false);
        const rejected = reasons
          ? reasons.get(key)
          : memory
            ? memory.rejected(key)
            : await rejectReason(pool, pointer.runId, key).catch(() => undefined);
        return sendMissingKey(reply, job, key, pointer.date, rejected);
      }
      if (row.source === 'computed') metrics.computed(job, 1);
      else if (row.source === 'late') metrics.lateAnswers(job, 1);
      else metrics.hits(job, 1);
      return reply.type(JSON_TYPE).send(predictionJson(pointer, key, row));
    },
  );

  app.post<{ Params: { job: string }; Querystring: Record<string, unknown> }>('/v1/predictions/:job', async (request, reply) => {
    const { job } = request.params;
    checkJob(job);
    const { wait, ...rest } = request.query;
    const variant = batchVariant(rest);
    const waitMs = checkWait(wait);
    const { keys, asOf, latestBefore } = parseBatchBody(request.body, limits);
    const first = pointerFor(job, asOf, latestBefore);
    const work = async () => {
      const memory = keys.length > POINT_KEYS && memoryFor(first, false) !== undefined;
      if (memory) await bulkTurn();
      const started = performance.now();
      const found = await answer(first, keys, { asOf, latestBefore }, variant);
      // With ?wait= and keys pending, the answer is written once they are stored (below).
      const waiting = waitMs > 0 && (found.pending?.length ?? 0) > 0;
      const out = waiting ? undefined : batchJson(found.pointer, keys, found.rows, found.notComputed, found);
      // Counted at what the batch costs the loop in all, parsing its body and writing its
      // answer included, which happen outside this function.
      if (memory) bulkSpent(Math.max(performance.now() - started, keys.length * BULK_KEY_MS));
      return { out, found };
    };
    const { out, found } = keys.length <= POINT_KEYS ? await work() : await admission.run(keys.length, work);
    let answered = out;
    if (!answered) {
      // Enqueue on miss with ?wait=: the pending keys a worker stores meanwhile are answered
      // (outside the admission slot: waiting costs the loop nothing).
      const { pointer, rows, notComputed, pending, notEnqueued } = found;
      const settled = await late!.waitMany(pointer.runId, pending!, waitMs);
      const all = new Map(rows);
      for (const [key, s] of settled) if (s.row) all.set(key, s.row);
      const still = pending!.filter((k) => !settled.has(k));
      answered = batchJson(pointer, keys, all, notComputed, { pending: still, notEnqueued });
    }
    const { body, hits, computed, late: lateRows } = answered;
    metrics.hits(job, hits - computed - lateRows);
    metrics.computed(job, computed);
    metrics.lateAnswers(job, lateRows);
    metrics.misses(job, keys.length - hits);
    return reply.type(JSON_TYPE).send(body);
  });

  // A run's drift report (what `prescore runs report --json` prints). The token must be allowed
  // the run's job, which only the run itself names.
  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>('/v1/runs/:id/report', async (request, reply) => {
    checkQuery(request.query, []);
    const { id } = request.params;
    if (!/^[1-9]\d{0,18}$/.test(id) || BigInt(id) > 9223372036854775807n) {
      throw new HttpError(400, `run id must be a positive whole number (got "${id.slice(0, 40)}")`);
    }
    let found: Awaited<ReturnType<typeof runReport>>;
    try {
      found = await runReport(pool, id);
    } catch (err) {
      log.error({ err: errorMessage(err), runId: id }, 'report lookup failed');
      throw new HttpError(503, 'the database is unavailable; retry later');
    }
    if (!found) throw new HttpError(404, `run ${id} does not exist`);
    tokens.check(request.headers.authorization, found.run.job);
    if (!found.report) throw new HttpError(404, `run ${id} has no report (it is ${found.run.status})`);
    return dataHeaders(reply)
      .type(JSON_TYPE)
      .send(JSON.stringify({ run: found.run, ...found.report }));
  });

  installEvaluation(app, { provider: options.evaluation, log });

  app.get('/healthz', { config: { access: 'public' } }, async () => ({ status: 'ok' }));
  // Public, for load balancers and probes that carry no token; why it is not ready (which
  // names the database) only for a caller with a token, or on the ops port.
  app.get('/readyz', { config: { access: 'public' } }, async (request, reply) => {
    const r = await readiness(pool);
    if (!r.ready) log.warn({ err: r.error }, 'not ready');
    return reply.code(r.ready ? 200 : 503).send(tokens.allows(request.headers.authorization) ? r : { ready: r.ready });
  });
  app.get('/metrics', { config: { access: 'ops' } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  installErrorHandlers(app, { routes: ROUTES, bodyLimit, log });

  // Last: nothing above holds a resource, so a failure here leaves nothing behind.
  await listener.start();
  await splits?.start(); // never throws
  const refresh = setInterval(
    () => {
      pointers.reload().catch(() => undefined);
      tokens.reload().catch(() => undefined);
      void listener.ping();
    },
    (options.refreshSeconds ?? 30) * 1000,
  );
  refresh.unref();

  let closing: Promise<void> | undefined;
  if (tokens.mode === 'none') {
    log.warn('the API is OPEN (auth none): anyone who reaches it reads every prediction without a token');
  } else if (!tokens.enforced) {
    log.warn(
      'the API is OPEN until the first token is created (prescore tokens create); set PRESCORE_API_AUTH=token to close it now',
    );
  }

  return {
    app,
    ops,
    routes,
    pointers,
    cache,
    tokens,
    listener,
    close: () =>
      (closing ??= (async () => {
        clearInterval(refresh);
        await Promise.all([app.close(), ops.close()]);
        // Handlers of clients that hung up may still be running: they end before the pool does.
        await lookup.close();
        await misses.close();
        await late?.close();
        await cache.close();
        await score.close();
        await listener.close();
        await splits?.close();
        await Promise.all([pointers.idle(), tokens.idle()]);
      })()),
  };
}

/**
 * The job and run named by a publish notification ({job, date, runId}; retention sends a null
 * date and run). No job: every job is reloaded.
 */
function parsePublished(payload: string): { job: string | undefined; runId: string | undefined } {
  try {
    const { job, runId } = JSON.parse(payload) as { job?: unknown; runId?: unknown };
    return {
      job: typeof job === 'string' ? job : undefined,
      runId: typeof runId === 'string' && /^[1-9]\d{0,18}$/.test(runId) ? runId : undefined,
    };
  } catch {
    return { job: undefined, runId: undefined };
  }
}
