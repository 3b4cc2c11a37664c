import type { Pool } from '../db/pool.js';
import { loadPointer, loadPointers, type PointerRow } from '../db/sql/serving.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** The run that answers for one (job, date). Immutable: a publish replaces the object. */
export interface Pointer {
  job: string;
  date: string;
  runId: string;
  /**
   * The run `runId` reads through to when it is a layer (db/sql/layers.ts), else null: every
   * read of the run's predictions passes it on (a Pointer is a RunRef).
   */
  baseRunId: string | null;
  model: { name: string; version: number };
  /** When the run was published, ms since the epoch. */
  publishedAt: number;
}

interface JobPointers {
  /** The newest published date: what a request without asOf reads. */
  newest: Pointer;
  byDate: Map<string, Pointer>;
}

function toPointer(r: PointerRow): Pointer {
  return {
    job: r.job,
    date: r.date,
    runId: r.runId,
    baseRunId: r.baseRunId,
    model: { name: r.modelName, version: r.modelVersion },
    publishedAt: r.publishedAt.getTime(),
  };
}

function group(rows: PointerRow[]): Map<string, JobPointers> {
  const jobs = new Map<string, JobPointers>();
  for (const r of rows) {
    const p = toPointer(r);
    const j = jobs.get(p.job);
    if (!j) jobs.set(p.job, { newest: p, byDate: new Map([[p.date, p]]) });
    else {
      j.byDate.set(p.date, p);
      if (p.date > j.newest.date) j.newest = p;
    }
  }
  return jobs;
}

/**
 * The serving pointers of every job, in memory, so a request resolves its run without a query.
 * A request reads the map once and then uses that one Pointer for all its keys, which is what
 * makes every response come from exactly one run, whatever is published meanwhile.
 *
 * Reloads (all jobs, or one job after a publish notification) run one at a time in the order
 * asked: a reload that started after a publish committed always lands after any older one, so
 * the map never steps back to a previous run.
 */
export class ServingPointers {
  private jobs = new Map<string, JobPointers>();
  private wantAll = false;
  private readonly wantJobs = new Set<string>();
  private waiters: { resolve(): void; reject(err: unknown): void }[] = [];
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private readonly checking = new Map<string, Promise<Pointer | undefined>>();
  /** The runs some pointer names, by run id, rebuilt on every reload. */
  private serving = new Map<string, Pointer>();
  /** ms since the epoch of the last successful full load. */
  loadedAt = 0;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    /** Told after every successful reload, with the jobs it read (undefined: all). */
    private readonly onReloaded?: (jobs: string[] | undefined) => void,
  ) {}

  /** Whether some (job, date) is answered by this run now, as far as this map knows. */
  serves(runId: string): boolean {
    return this.serving.has(runId);
  }

  /** A pointer naming this run, if some (job, date) is answered by it now (as far as this map knows). */
  servingRun(runId: string): Pointer | undefined {
    return this.serving.get(runId);
  }

  /** The pointers of each job's newest date. */
  newestRuns(): Pointer[] {
    return [...this.jobs.values()].map((j) => j.newest);
  }

  /** The pointer a request uses: the date's run, or the newest date's; undefined when none. */
  /**
   * The pointer answering for `asOf` (none: the newest date). With `latestBefore`, a date
   * without a run falls back to the newest published date on or before it.
   */
  resolve(job: string, asOf: string | undefined, latestBefore = false): Pointer | undefined {
    const j = this.jobs.get(job);
    if (!j) return undefined;
    if (asOf === undefined) return j.newest;
    const exact = j.byDate.get(asOf);
    if (exact || !latestBefore) return exact;
    let best: Pointer | undefined;
    for (const [date, p] of j.byDate) if (date <= asOf && (!best || date > best.date)) best = p;
    return best;
  }

  /** The jobs with at least one published date. */
  jobNames(): string[] {
    return [...this.jobs.keys()];
  }

  hasJob(job: string): boolean {
    return this.jobs.has(job);
  }

  /** Age in seconds of the run serving each job's newest date. */
  ages(now = Date.now()): [job: string, seconds: number][] {
    return [...this.jobs].map(([job, j]) => [job, Math.max(0, (now - j.newest.publishedAt) / 1000)]);
  }

  /** Reloads one job's pointers (after a publish notification) or, without a job, all of them. */
  reload(job?: string): Promise<void> {
    if (job === undefined) this.wantAll = true;
    else this.wantJobs.add(job);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.draining) {
      this.draining = true;
      this.drained = this.drain();
    }
    return done;
  }

  /** Settles when no reload is running. */
  idle(): Promise<void> {
    return this.drained;
  }

  /**
   * The current pointer of (job, date) straight from the database, for a request that found
   * keys missing: if its run has meanwhile been replaced (and perhaps dropped), the request is
   * answered again from the new run instead of reporting keys missing that are not.
   */
  current(job: string, date: string): Promise<Pointer | undefined> {
    // Requests that miss keys of the same (job, date) at once share one query.
    const id = `${job}\0${date}`;
    let check = this.checking.get(id);
    if (!check) {
      check = this.fetchCurrent(job, date).finally(() => this.checking.delete(id));
      this.checking.set(id, check);
    }
    return check;
  }

  private async fetchCurrent(job: string, date: string): Promise<Pointer | undefined> {
    const row = await loadPointer(this.pool, job, date);
    const fresh = row && toPointer(row);
    const cached = this.jobs.get(job)?.byDate.get(date);
    if (fresh?.runId !== cached?.runId) this.reload(job).catch(() => undefined);
    return fresh;
  }

  // Never throws. `draining` is cleared synchronously right after the loop's last check, so a
  // reload() asked at any moment is either picked up by this loop or starts a new one.
  private async drain(): Promise<void> {
    while (this.wantAll || this.wantJobs.size > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      const all = this.wantAll;
      const jobs = [...this.wantJobs];
      try {
        if (all) {
          this.wantAll = false;
          this.wantJobs.clear();
          this.jobs = group(await loadPointers(this.pool));
          this.loadedAt = Date.now();
        } else {
          this.wantJobs.clear();
          const loaded = group(await loadPointers(this.pool, jobs));
          for (const job of jobs) {
            const j = loaded.get(job);
            if (j) this.jobs.set(job, j);
            else this.jobs.delete(job);
          }
        }
        this.serving = new Map([...this.jobs.values()].flatMap((j) => [...j.byDate.values()].map((p) => [p.runId, p] as const)));
        const reloaded = all ? undefined : jobs;
        try {
          this.onReloaded?.(reloaded);
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'after reloading the serving pointers');
        }
        for (const w of waiters) w.resolve();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'could not load the serving pointers; keeping the ones in memory');
        for (const w of waiters) w.reject(err);
      }
    }
    this.draining = false;
  }
}
