import type { Pool } from '../db/pool.js';
import { LAYER_LOOKUP, type RunRef } from '../db/sql/layers.js';
import { LOOKUP, type LookupRow } from '../db/sql/predictions.js';
import { LookupUnavailable } from '../errors.js';
import { Lane, type LaneBatch } from './lane.js';

export interface StoredPrediction {
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

export interface LookupOptions {
  /** Queries in flight at once; more requests wait and join the next query. */
  maxInFlight: number;
  /** Keys in one query at most. */
  maxBatchKeys: number;
  /**
   * A lookup not answered within this long fails (the caller answers 503): it bounds the wait
   * for a connection, for the query, and in the queue, so a database that hangs instead of
   * failing cannot hold requests forever.
   */
  timeoutMs: number;
  /** Keys waiting for a connection at most; a lookup beyond that is refused at once. */
  maxQueuedKeys: number;
  /** Lookups of at most this many keys are point reads: they go ahead of batches (default 16). */
  pointKeys?: number;
  /** Told of every query sent, with its number of distinct keys (for metrics). */
  onQuery?: (keys: number) => void;
}

interface Waiter {
  resolve(rows: Map<string, StoredPrediction>): void;
  reject(err: unknown): void;
}

interface Batch extends LaneBatch<Waiter> {
  runId: string;
  /** The run's base when it is a layer: a run's base never changes, so the batch of a run id has one. */
  baseRunId: string | null;
  deadline: number;
  /** Keys added, repeats included: what the batch counts against maxQueuedKeys. */
  charged: number;
}

/** How long after a point read batches stay throttled to one query at a time. */
const POINT_WINDOW_MS = 250;

/**
 * Point lookups of predictions, micro-batched: the keys asked for one run during one turn of
 * the event loop, or while every connection is busy, go to PostgreSQL as ONE query. Under load
 * that turns fifty single-key GETs into a handful of `key = ANY(...)` queries, where the cost
 * is the round trip, not the index descent. Each caller gets the rows of the run it named.
 *
 * Two lanes share the connections: point reads (a few keys) always go first, and batches of
 * many keys may use all connections but a quarter (one, while point reads are coming in),
 * split into queries of at most maxBatchKeys. So a hundred clients posting a thousand keys
 * each queue behind each other, not in front of a single GET.
 */
export class Lookup {
  /** Point reads first, then batches: each a lane of its own. */
  private readonly point = new Lane<Waiter, Batch>();
  private readonly bulk = new Lane<Waiter, Batch>();
  private readonly pointKeys: number;
  private readonly maxBulkInFlight: number;
  private queuedKeys = 0;
  /** When the last point read arrived: while they keep coming, batches get one query at a time. */
  private lastPointAt = 0;
  private scheduled = false;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  private drained: (() => void) | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly options: LookupOptions,
  ) {
    this.pointKeys = options.pointKeys ?? 16;
    this.maxBulkInFlight = Math.max(1, options.maxInFlight - Math.max(1, Math.floor(options.maxInFlight / 4)));
  }

  /**
   * The stored predictions of `keys` in `run` (keys not found are absent from the map); a layer's
   * read through to its base (LAYER_LOOKUP), a run holding all its rows with plain LOOKUP.
   */
  find(run: RunRef, keys: readonly string[]): Promise<Map<string, StoredPrediction>> {
    if (this.closed) return Promise.reject(new LookupUnavailable('the API is shutting down'));
    if (this.queuedKeys + keys.length > this.options.maxQueuedKeys) {
      return Promise.reject(new LookupUnavailable(`${this.queuedKeys} keys are waiting for the database already`, true));
    }
    const deadline = Date.now() + this.options.timeoutMs;
    const max = this.options.maxBatchKeys;
    let result: Promise<Map<string, StoredPrediction>>;
    if (keys.length <= this.pointKeys) {
      this.lastPointAt = Date.now();
      result = new Promise((resolve, reject) => this.add(this.point, run, keys, { resolve, reject }, deadline));
    } else {
      // A big request goes out in pieces, so it neither holds one connection long nor makes a
      // query PostgreSQL plans worse than a few small ones.
      const parts: Promise<Map<string, StoredPrediction>>[] = [];
      for (let i = 0; i < keys.length; i += max) {
        const piece = keys.slice(i, i + max);
        parts.push(new Promise((resolve, reject) => this.add(this.bulk, run, piece, { resolve, reject }, deadline)));
      }
      result =
        parts.length === 1
          ? parts[0]!
          : Promise.all(parts).then((maps) => {
              const all = new Map<string, StoredPrediction>();
              for (const m of maps) for (const [k, v] of m) all.set(k, v);
              return all;
            });
    }
    this.queuedKeys += keys.length;
    if (!this.scheduled) {
      this.scheduled = true;
      // After the poll phase: every request that arrived in this turn has joined by then.
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
    this.sweeper ??= setInterval(() => this.sweep(), Math.max(10, Math.min(250, this.options.timeoutMs / 4))).unref();
    return result;
  }

  /**
   * Refuses new lookups, fails the queued ones, and resolves once the queries in flight are
   * done: after that nothing touches the pool. Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const b of [...expired(this.point, Infinity), ...expired(this.bulk, Infinity)]) {
      this.fail(b, new LookupUnavailable('the API is shutting down'));
    }
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
  }

  private add(lane: Lane<Waiter, Batch>, run: RunRef, keys: readonly string[], waiter: Waiter, deadline: number): void {
    const { runId, baseRunId } = run;
    const batch = lane.add(runId, keys, waiter, this.options.maxBatchKeys, () => ({
      runId,
      baseRunId,
      keys: new Set(),
      waiters: [],
      deadline,
      charged: 0,
    }));
    batch.charged += keys.length;
  }

  private sweep(): void {
    const now = Date.now();
    for (const b of [...expired(this.point, now), ...expired(this.bulk, now)]) {
      this.fail(b, new LookupUnavailable(`no database connection within ${this.options.timeoutMs} ms`));
    }
    if (!this.point.waiting && !this.bulk.waiting && this.inFlight === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private get inFlight(): number {
    return this.point.inFlight + this.bulk.inFlight;
  }

  private fail(batch: Batch, err: unknown): void {
    this.queuedKeys -= batch.charged;
    for (const w of batch.waiters) w.reject(err);
  }

  private flush(): void {
    while (this.inFlight < this.options.maxInFlight) {
      let lane = this.point;
      let batch = lane.take();
      // While point reads are arriving, batches get one query at a time: each batch query's rows
      // are parsed on the event loop in one piece, and a GET waits behind every piece in front
      // of it (measured with 100 clients posting 1000 keys: single-GET p99 11 ms with up to 12
      // batch queries at once, 7 ms with 2, 4 ms with 1). Batches alone use the connections.
      const bulkLimit = Date.now() - this.lastPointAt < POINT_WINDOW_MS ? 1 : this.maxBulkInFlight;
      if (!batch && this.bulk.inFlight < bulkLimit) {
        lane = this.bulk;
        batch = lane.take();
      }
      if (!batch) return;
      this.send(lane, batch);
    }
  }

  private send(lane: Lane<Waiter, Batch>, batch: Batch): void {
    lane.inFlight++;
    const keys = [...batch.keys];
    this.options.onQuery?.(keys.length);
    // What is left of the lookup's time bounds the query: a stalled server fails it, and pg
    // then drops the connection rather than reuse it.
    const queryTimeout = Math.max(50, batch.deadline - Date.now());
    const query = batch.baseRunId
      ? { ...LAYER_LOOKUP, values: [batch.runId, keys, batch.baseRunId], query_timeout: queryTimeout }
      : { ...LOOKUP, values: [batch.runId, keys], query_timeout: queryTimeout };
    this.pool
      .query<LookupRow>(query as typeof LOOKUP & { values: unknown[] })
      .then(
        ({ rows }) => {
          const found = new Map<string, StoredPrediction>();
          for (const r of rows) found.set(r[0], { score: r[1], label: r[2], outputs: r[3] });
          for (const w of batch.waiters) w.resolve(found);
        },
        (err: unknown) => {
          for (const w of batch.waiters) w.reject(err);
        },
      )
      .finally(() => {
        lane.inFlight--;
        this.queuedKeys -= batch.charged;
        if (this.closed) {
          if (this.inFlight === 0) this.drained?.();
          return;
        }
        // Whatever queued up meanwhile goes out now, as one query per run.
        this.flush();
      });
  }
}

/** Removes and returns a lane's batches whose deadline has passed. */
function expired(lane: Lane<Waiter, Batch>, now: number): Batch[] {
  return lane.remove((b) => b.deadline <= now);
}
