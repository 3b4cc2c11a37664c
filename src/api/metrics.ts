import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunCache } from './memory.js';
import type { ServingPointers } from './pointers.js';

type HttpLabels = 'route' | 'method' | 'status';

/**
 * The API's Prometheus metrics, in a registry of its own (several APIs in one process, as in
 * tests, do not share counters). Label children are cached: a request costs two Map lookups.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<HttpLabels>;
  private readonly duration: Histogram<HttpLabels>;
  private readonly hitsTotal: Counter<'prescore_job'>;
  private readonly missesTotal: Counter<'prescore_job'>;
  private readonly batchKeys: Histogram;
  private readonly computedTotal: Counter<'prescore_job'>;
  private readonly missQueries: Histogram<'prescore_job'>;
  private readonly lateEnqueuedTotal: Counter<'prescore_job'>;
  private readonly lateAnswersTotal: Counter<'prescore_job'>;
  private readonly cacheHitsTotal: Counter;
  private readonly cacheMissesTotal: Counter;
  private readonly cacheLoads: Counter<'outcome'>;
  private readonly children = new Map<string, { count: Counter.Internal; seconds: Histogram.Internal<HttpLabels> }>();

  constructor(
    pointers: ServingPointers,
    state: { listening(): boolean },
    options: { processMetrics?: boolean; cache?: RunCache } = {},
  ) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'prescore_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'prescore_http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.hitsTotal = new Counter({
      name: 'prescore_prediction_hits_total',
      help: 'keys answered with a prediction, by job',
      labelNames: ['prescore_job'],
      registers,
    });
    this.missesTotal = new Counter({
      name: 'prescore_prediction_misses_total',
      help: 'keys asked for that the serving run does not have (and compute or enqueue on miss did not answer), by job',
      labelNames: ['prescore_job'],
      registers,
    });
    this.batchKeys = new Histogram({
      name: 'prescore_api_lookup_query_keys',
      help: 'distinct keys per lookup query: requests arriving together share one query',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000],
      registers,
    });
    this.computedTotal = new Counter({
      name: 'prescore_prediction_computed_total',
      help: 'keys the serving run does not have, answered by scoring their source row (serving.onMiss compute), by job',
      labelNames: ['prescore_job'],
      registers,
    });
    this.missQueries = new Histogram({
      name: 'prescore_api_miss_query_keys',
      help: 'distinct keys per source query of compute on miss: misses arriving together share one query and one inference call',
      labelNames: ['prescore_job'],
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 1000],
      registers,
    });
    this.lateEnqueuedTotal = new Counter({
      name: 'prescore_late_enqueued_total',
      help: 'missing keys put on the late queue (serving.onMiss enqueue), by job; a key already waiting is one job in the queue',
      labelNames: ['prescore_job'],
      registers,
    });
    this.lateAnswersTotal = new Counter({
      name: 'prescore_late_answers_total',
      help: 'keys the serving run does not have, answered from its late arrivals (scored by a worker after an enqueue), by job',
      labelNames: ['prescore_job'],
      registers,
    });
    new Gauge({
      name: 'prescore_served_run_age_seconds',
      help: "seconds since the run serving the job's newest date was published: alert when a nightly job goes stale",
      labelNames: ['prescore_job'],
      registers,
      collect() {
        this.reset();
        for (const [job, seconds] of pointers.ages()) this.set({ prescore_job: job }, seconds);
      },
    });
    new Gauge({
      name: 'prescore_api_listener_up',
      help: '1 while the LISTEN connection that learns of new runs is up',
      registers,
      collect() {
        this.set(state.listening() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'prescore_api_pointers_loaded_timestamp_seconds',
      help: 'when the serving pointers were last read in full from the database',
      registers,
      collect() {
        this.set(pointers.loadedAt / 1000);
      },
    });
    this.cacheHitsTotal = new Counter({
      name: 'prescore_api_cache_hits_total',
      help: 'keys answered from a run held in memory',
      registers,
    });
    this.cacheMissesTotal = new Counter({
      name: 'prescore_api_cache_misses_total',
      help: 'keys answered from PostgreSQL while the memory cache is on (their run not loaded yet, too large, or its pointer being reloaded)',
      registers,
    });
    this.cacheLoads = new Counter({
      name: 'prescore_api_cache_loads_total',
      help: 'runs read into memory, by outcome: loaded, too-large (over the budget), gone (dropped or replaced while loading), failed',
      labelNames: ['outcome'],
      registers,
    });
    const cache = options.cache;
    new Gauge({
      name: 'prescore_api_cache_bytes',
      help: 'bytes of predictions held in memory (estimated from the arrays and keys)',
      registers,
      collect() {
        this.set(cache?.bytes ?? 0);
      },
    });
    new Gauge({
      name: 'prescore_api_cache_budget_bytes',
      help: 'the memory budget for runs (serve --cache-mb); 0: the cache is off',
      registers,
      collect() {
        this.set(cache?.budgetBytes ?? 0);
      },
    });
    new Gauge({
      name: 'prescore_api_cache_runs',
      help: 'runs held in memory',
      registers,
      collect() {
        this.set(cache?.size ?? 0);
      },
    });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'prescore_' });
  }

  request(route: string, method: string, status: number, seconds: number): void {
    const id = `${route} ${method} ${status}`;
    let c = this.children.get(id);
    if (!c) {
      const labels = { route, method, status: String(status) };
      c = { count: this.requests.labels(labels), seconds: this.duration.labels(labels) };
      this.children.set(id, c);
    }
    c.count.inc();
    c.seconds.observe(seconds);
  }

  lookupQuery(keys: number): void {
    this.batchKeys.observe(keys);
  }

  cacheHits(n: number): void {
    this.cacheHitsTotal.inc(n);
  }

  cacheMisses(n: number): void {
    this.cacheMissesTotal.inc(n);
  }

  cacheLoad(outcome: string): void {
    this.cacheLoads.inc({ outcome });
  }

  hits(job: string, n: number): void {
    if (n > 0) this.hitsTotal.inc({ prescore_job: job }, n);
  }

  computed(job: string, n: number): void {
    if (n > 0) this.computedTotal.inc({ prescore_job: job }, n);
  }

  lateEnqueued(job: string, n: number): void {
    if (n > 0) this.lateEnqueuedTotal.inc({ prescore_job: job }, n);
  }

  lateAnswers(job: string, n: number): void {
    if (n > 0) this.lateAnswersTotal.inc({ prescore_job: job }, n);
  }

  missQuery(job: string, keys: number): void {
    this.missQueries.observe({ prescore_job: job }, keys);
  }

  misses(job: string, n: number): void {
    if (n > 0) this.missesTotal.inc({ prescore_job: job }, n);
  }
}
