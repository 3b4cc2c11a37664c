import pg from 'pg';
import type { Pool, PoolClient } from '../db/pool.js';
import { HttpError, LookupUnavailable, errorMessage } from '../errors.js';
import type { InferencePool } from '../inference/pool.js';
import type { Logger } from '../log.js';
import { readMissingKeys, scoreRunKeys, type KeyOutcome } from '../score/keyed.js';
import type { PinnedRun, PinnedRuns } from '../score/pinned.js';
import { keyFits } from '../source/keys.js';
import { Lane, type LaneBatch } from './lane.js';
import type { StoredPrediction } from './lookup.js';
import type { Pointer } from './pointers.js';

/** An answer's prediction: stored by the run, or (`source`) computed on a miss, or scored late (enqueue on miss). */
export interface Answered extends StoredPrediction {
  source?: 'computed' | 'late';
}

/** What a request gets: the rows of one run, with what could be computed of the missing keys. */
export interface Completed {
  pointer: Pointer;
  rows: Map<string, Answered>;
  /** When the job computes on miss: why each missing key has no answer (absent: not in the source either). */
  rejected?: Map<string, string>;
  /** Missing keys beyond the per-request limit, left missing. */
  notComputed?: string[];
  /** When the job enqueues on miss: the missing keys enqueued (or waiting in the queue already). */
  pending?: string[];
  /** ...and those beyond the per-request limit, left missing. */
  notEnqueued?: string[];
}

export interface MissOptions {
  /** Missing keys one request may have computed (default 100); the rest stay missing. */
  maxKeys?: number;
  /** A computation not done within this long fails the request with 503 (the API's lookup timeout). */
  timeoutMs: number;
  /** Source queries in flight at once (default 2); misses arriving meanwhile wait and share the next one. */
  maxInFlight?: number;
  /** How long the first miss of a query waits for others to share it (ms, default 1; 0: one turn of the event loop). */
  windowMs?: number;
  /** Keys in one source query at most (default 1000). */
  maxBatchKeys?: number;
  /** Keys waiting for a source query at most; beyond it, 503 at once (default 20,000). */
  maxQueuedKeys?: number;
}

export interface MissDeps {
  pool: Pool;
  runs: PinnedRuns;
  inference(): InferencePool;
  log: Logger;
  /** Enqueue on miss (src/api/late.ts); without it, such a job's misses stay missing. */
  late?: {
    complete(run: PinnedRun, pointer: Pointer, missing: string[], rows: Map<string, StoredPrediction>): Promise<Completed>;
  };
  /** Told of each source query: the job and its distinct keys. */
  onQuery?(job: string, keys: number): void;
}

/** A key's fate in the source: a prediction as a run would store it, or the reason a run would reject it. */
type Outcome = { row: Answered } | { rejected: string };

interface Waiter {
  resolve(outcomes: Map<string, Outcome>): void;
  reject(err: unknown): void;
}

interface Batch extends LaneBatch<Waiter> {
  run: PinnedRun;
}

const INFLIGHT_DEFAULT = 2;

/**
 * Compute on miss (`serving.onMiss: "compute"`): the keys a served run lacks are read from the
 * job's source for the run's date and scored with the run's pinned model version and output
 * mapping, stored nowhere. The misses of one run that arrive together (one turn of the event
 * loop, or while the source queries are busy) share ONE source query (binary COPY through the
 * chunk reader's decoder, in a read-only transaction) and ONE inference call, on the inference
 * threads of POST /v1/score.
 */
export class Misses {
  private readonly lane = new Lane<Waiter, Batch>();
  private queuedKeys = 0;
  private scheduled = false;
  private closed = false;
  private drained: (() => void) | undefined;
  private sourcePool: Pool | undefined;
  private readonly maxKeys: number;
  private readonly maxInFlight: number;
  private readonly maxBatchKeys: number;
  private readonly maxQueuedKeys: number;
  private readonly windowMs: number;

  constructor(
    private readonly deps: MissDeps,
    private readonly options: MissOptions,
  ) {
    this.maxKeys = options.maxKeys ?? 100;
    this.maxInFlight = options.maxInFlight ?? INFLIGHT_DEFAULT;
    this.maxBatchKeys = options.maxBatchKeys ?? 1000;
    this.maxQueuedKeys = options.maxQueuedKeys ?? 20_000;
    this.windowMs = options.windowMs ?? 1;
  }

  /**
   * `rows` (the stored lookup's answer for `keys` in the pointer's run) completed with computed
   * predictions of the missing keys, when the run's job computes on miss; as it is otherwise.
   */
  async complete(pointer: Pointer, keys: readonly string[], rows: Map<string, StoredPrediction>): Promise<Completed> {
    let missing: Set<string> | undefined;
    for (const k of keys) if (!rows.has(k)) (missing ??= new Set()).add(k);
    if (!missing) return { pointer, rows };
    const run = await this.deps.runs.get(pointer.runId);
    if (!run || run.onMiss === 'off') return { pointer, rows };
    if (run.onMiss === 'enqueue')
      return this.deps.late ? this.deps.late.complete(run, pointer, [...missing], rows) : { pointer, rows };
    const all = [...missing];
    const take = all.slice(0, this.maxKeys);
    const notComputed = all.length > take.length ? all.slice(take.length) : undefined;
    const fit = take.filter((k) => keyFits(run.job.key.pgType, k));
    const outcomes = fit.length > 0 ? await this.compute(run, fit) : new Map<string, Outcome>();
    // The lookup's map is shared by the requests of its query: answers go into a copy.
    const out = new Map<string, Answered>(rows);
    const rejected = new Map<string, string>();
    for (const k of fit) {
      const o = outcomes.get(k);
      if (!o) continue;
      if ('row' in o) out.set(k, o.row);
      else rejected.set(k, o.rejected);
    }
    return { pointer, rows: out, rejected, notComputed };
  }

  /** Refuses new misses, fails those waiting, resolves once the computations in flight are done. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const b of this.lane.remove(() => true)) this.settle(b, new LookupUnavailable('the API is shutting down'));
    if (this.lane.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await this.sourcePool?.end();
  }

  /**
   * The connections misses read the source on: a few of their own, every transaction on them
   * READ ONLY by default (default_transaction_read_only), so a table source's COPY is one
   * round trip rather than BEGIN, COPY, ROLLBACK (three, each costing a turn of both
   * processes under load). A source query still gets its explicit READ ONLY transaction, which
   * ROLLBACK ends: a set_config() in it cannot outlive it.
   */
  private source(): Pool {
    if (!this.sourcePool) {
      const base = this.deps.pool.options as pg.PoolConfig;
      this.sourcePool = new pg.Pool({ ...base, max: this.maxInFlight, options: '-c default_transaction_read_only=on' });
      this.sourcePool.on('error', (err) =>
        this.deps.log.warn({ err: err.message }, 'postgres connection error (compute on miss)'),
      );
    }
    return this.sourcePool;
  }

  private compute(run: PinnedRun, keys: string[]): Promise<Map<string, Outcome>> {
    if (this.closed) return Promise.reject(new LookupUnavailable('the API is shutting down'));
    if (this.queuedKeys + keys.length > this.maxQueuedKeys) {
      return Promise.reject(new LookupUnavailable(`${this.queuedKeys} missing keys are waiting to be computed already`, true));
    }
    const result = new Promise<Map<string, Outcome>>((resolve, reject) => {
      this.lane.add(run.runId, keys, { resolve, reject }, this.maxBatchKeys, () => ({ run, keys: new Set(), waiters: [] }));
    });
    this.queuedKeys += keys.length;
    const charged = keys.length;
    if (!this.scheduled && this.lane.inFlight < this.maxInFlight) {
      this.scheduled = true;
      // Misses come in as the stored lookups of their requests answer, over a millisecond or
      // so: they wait that long to share one query (while queries are busy, they wait anyway).
      const go = () => {
        this.scheduled = false;
        this.flush();
      };
      if (this.windowMs > 0) setTimeout(go, this.windowMs);
      else setImmediate(go);
    }
    // The wait in the queue, the query and the inference: all within the lookup timeout.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LookupUnavailable(`computing the missing keys took longer than ${this.options.timeoutMs} ms`)),
        this.options.timeoutMs,
      );
    });
    return Promise.race([result, timeout]).finally(() => {
      clearTimeout(timer);
      this.queuedKeys -= charged;
    });
  }

  private flush(): void {
    while (this.lane.inFlight < this.maxInFlight) {
      const b = this.lane.take();
      if (!b) return;
      this.lane.inFlight++;
      this.run(b)
        .then(
          (outcomes) => this.settle(b, outcomes),
          (err: unknown) => this.settle(b, err),
        )
        .finally(() => {
          this.lane.inFlight--;
          if (this.closed) {
            if (this.lane.inFlight === 0) this.drained?.();
            return;
          }
          this.flush();
        });
    }
  }

  private settle(batch: Batch, result: Map<string, Outcome> | unknown): void {
    for (const w of batch.waiters) {
      if (result instanceof Map) w.resolve(result as Map<string, Outcome>);
      else w.reject(result);
    }
  }

  /** One source query and one inference call for the batch's keys. */
  private async run(batch: Batch): Promise<Map<string, Outcome>> {
    const { run } = batch;
    const keys = [...batch.keys];
    const found = new Map<string, KeyOutcome>();
    const model = run.model();
    this.deps.onQuery?.(run.job.name, keys.length);
    const read = await this.read(run, keys, found);
    if (read.keys.length > 0) {
      const m = await model;
      try {
        await scoreRunKeys(this.deps.inference(), m, read, found);
      } catch (err) {
        this.deps.log.error(
          { err: errorMessage(err), job: run.job.name, model: `${m.name}@${m.version}` },
          'scoring a miss failed',
        );
        throw new HttpError(500, `model ${m.name} v${m.version} failed on the missing keys: ${errorMessage(err).split('\n')[0]}`);
      }
    }
    const outcomes = new Map<string, Outcome>();
    for (const [k, o] of found) outcomes.set(k, 'row' in o ? { row: { ...o.row, source: 'computed' } } : o);
    return outcomes;
  }

  /**
   * In one read-only transaction: the keys the run rejected (they answer with the run's reason,
   * not computed again), then the others' rows from the source (readMissingKeys).
   */
  private async read(run: PinnedRun, keys: string[], outcomes: Map<string, KeyOutcome>) {
    const pool = this.source();
    let client: PoolClient | undefined;
    let released = false;
    let timedOut = false;
    // A database that hangs without failing: the connection is dropped (its query with it).
    const timer = setTimeout(() => {
      timedOut = true;
      if (client && !released) {
        released = true;
        client.release(new Error('compute on miss timed out'));
      }
    }, this.options.timeoutMs);
    try {
      client = await pool.connect();
      if (timedOut) throw new LookupUnavailable('no database connection in time');
      const query = run.job.query !== null;
      if (query) await client.query('BEGIN TRANSACTION READ ONLY');
      const rows = await readMissingKeys(client, run, keys, outcomes);
      if (query) await client.query('ROLLBACK');
      return rows;
    } catch (err) {
      if (client && !released) {
        released = true;
        client.release(err instanceof Error ? err : new Error(String(err)));
      }
      throw err;
    } finally {
      clearTimeout(timer);
      if (client && !released) {
        released = true;
        client.release();
      }
    }
  }
}
