import type { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';
import type { Queryable } from '../db/pool.js';
import { clusterSnapshot, type ClusterSnapshot } from '../db/sql/metrics.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** The BullMQ states reported per queue. */
export const QUEUE_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'waiting-children', 'failed'] as const;

export interface ClusterReading extends ClusterSnapshot {
  queues: { queue: string; state: string; count: number }[];
}

export interface ClusterOptions {
  /** Values younger than this are served without asking again: many scrapers, one query. */
  cacheMs?: number;
  /** A scrape waits this long for the database and the queue, then serves the last values. */
  timeoutMs?: number;
}

const EMPTY: ClusterReading = { runs: [], lastPublish: [], drift: [], queues: [] };

/** Reads the runs ledger and the queues' job counts: what ClusterGauges shows. */
export function clusterReader(db: Queryable, queues: Queue[]): () => Promise<ClusterReading> {
  return async () => {
    const [snapshot, counts] = await Promise.all([
      clusterSnapshot(db),
      Promise.all(queues.map(async (q) => ({ queue: q.name, counts: await q.getJobCounts(...QUEUE_STATES) }))),
    ]);
    const rows = counts.flatMap(({ queue, counts: c }) => QUEUE_STATES.map((state) => ({ queue, state, count: c[state] ?? 0 })));
    return { ...snapshot, queues: rows };
  };
}

/**
 * Gauges read from the database and the queue when Prometheus scrapes: runs by job and
 * status, the age of each job's last publish, the last run's drift, queued jobs. A reading is
 * cached for `cacheMs`, and only one is in flight at a time. When the database or the queue
 * does not answer within `timeoutMs`, the scrape gets the last values (ages still grow) and
 * `prescore_cluster_read_ok` 0; the read goes on in the background and is used when it lands.
 */
export class ClusterGauges {
  private last: ClusterReading = EMPTY;
  private lastAt = 0;
  private ok = 0;
  private inflight: Promise<void> | undefined;
  private scrape: Promise<void> | undefined;
  private readonly cacheMs: number;
  private readonly timeoutMs: number;

  constructor(
    registry: Registry,
    private readonly read: () => Promise<ClusterReading>,
    private readonly log: Logger,
    options: ClusterOptions = {},
  ) {
    this.cacheMs = options.cacheMs ?? 5000;
    this.timeoutMs = options.timeoutMs ?? 750;
    const current = () => this.current();
    // A cached or stale reading still ages: a database that stopped answering must not look fresh.
    const readAgo = () => (this.lastAt ? (Date.now() - this.lastAt) / 1000 : 0);
    const ok = () => this.ok;
    const registers = [registry];
    new Gauge({
      name: 'prescore_runs',
      help: 'runs in the database by job and status (the whole cluster, as read from the runs table)',
      labelNames: ['prescore_job', 'status'],
      registers,
      async collect() {
        const r = await current();
        this.reset();
        for (const x of r.runs) this.set({ prescore_job: x.job, status: x.status }, x.count);
      },
    });
    new Gauge({
      name: 'prescore_last_publish_age_seconds',
      help: "seconds since the job's newest published run was published",
      labelNames: ['prescore_job'],
      registers,
      async collect() {
        const r = await current();
        const since = readAgo();
        this.reset();
        for (const x of r.lastPublish) this.set({ prescore_job: x.job }, x.ageSeconds + since);
      },
    });
    new Gauge({
      name: 'prescore_last_run_feature_psi_max',
      help: "the largest feature PSI of the job's newest run with a drift report, against its baseline",
      labelNames: ['prescore_job'],
      registers,
      async collect() {
        const r = await current();
        this.reset();
        for (const x of r.drift) if (x.featurePsiMax !== null) this.set({ prescore_job: x.job }, x.featurePsiMax);
      },
    });
    new Gauge({
      name: 'prescore_last_run_score_psi',
      help: "the score's PSI of the job's newest run with a drift report, against its baseline",
      labelNames: ['prescore_job'],
      registers,
      async collect() {
        const r = await current();
        this.reset();
        for (const x of r.drift) if (x.scorePsi !== null) this.set({ prescore_job: x.job }, x.scorePsi);
      },
    });
    new Gauge({
      name: 'prescore_queue_jobs',
      help: 'BullMQ jobs by queue (chunks, finalize, late) and state',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        const r = await current();
        this.reset();
        for (const x of r.queues) this.set({ queue: x.queue, state: x.state }, x.count);
      },
    });
    new Gauge({
      name: 'prescore_cluster_read_ok',
      help: '1 when the database and the queue answered the last scrape in time; 0: the cluster gauges show older values',
      registers,
      async collect() {
        await current();
        this.set(ok());
      },
    });
  }

  /** The reading to show now: fresh from the cache, newly read, or the last one if the read is late. */
  private async current(): Promise<ClusterReading> {
    if (this.ok && Date.now() - this.lastAt < this.cacheMs) return this.last;
    this.scrape ??= this.refresh().finally(() => (this.scrape = undefined));
    await this.scrape;
    return this.last;
  }

  private async refresh(): Promise<void> {
    this.inflight ??= this.read()
      .then(
        (reading) => {
          this.last = reading;
          this.lastAt = Date.now();
          this.ok = 1;
        },
        (err: unknown) => {
          this.ok = 0;
          this.log.warn({ err: errorMessage(err) }, 'metrics: reading the cluster gauges failed');
        },
      )
      .finally(() => (this.inflight = undefined));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.timeoutMs)));
    const timedOut = await Promise.race([this.inflight.then(() => false), late]);
    clearTimeout(timer);
    if (timedOut) this.ok = 0;
  }
}
