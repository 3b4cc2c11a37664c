import type { Pool } from '../db/pool.js';

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
  /** Told of every query sent, with its number of distinct keys (for metrics). */
  onQuery?: (keys: number) => void;
}

interface Waiter {
  resolve(rows: Map<string, StoredPrediction>): void;
  reject(err: unknown): void;
}

interface Batch {
  runId: string;
  keys: Set<string>;
  waiters: Waiter[];
}

// The run's id is a parameter and the planner prunes to its one partition, whose unique index
// on key (COLLATE "C", as the column) answers `= ANY` with one descent per key. Named, so each
// connection parses it once.
const QUERY = {
  name: 'prescore_api_lookup',
  text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key = ANY ($2::text[])',
  rowMode: 'array',
} as const;

/**
 * Point lookups of predictions, micro-batched: the keys asked for one run during one turn of
 * the event loop, or while every connection is busy, go to PostgreSQL as ONE query. Under load
 * that turns fifty single-key GETs into a handful of `key = ANY(...)` queries, where the cost
 * is the round trip, not the index descent. Each caller gets the rows of the run it named.
 */
export class Lookup {
  private readonly pending = new Map<string, Batch>();
  private readonly full: Batch[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly pool: Pool,
    private readonly options: LookupOptions,
  ) {}

  /** The stored predictions of `keys` in run `runId` (keys not found are absent from the map). */
  find(runId: string, keys: readonly string[]): Promise<Map<string, StoredPrediction>> {
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(runId);
      if (batch && batch.keys.size + keys.length > this.options.maxBatchKeys) {
        this.pending.delete(runId);
        this.full.push(batch);
        batch = undefined;
      }
      if (!batch) {
        batch = { runId, keys: new Set(), waiters: [] };
        this.pending.set(runId, batch);
      }
      for (const k of keys) batch.keys.add(k);
      batch.waiters.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // After the poll phase: every request that arrived in this turn has joined by then.
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.inFlight < this.options.maxInFlight) {
      let batch = this.full.shift();
      if (!batch) {
        const first = this.pending.values().next();
        if (first.done) return;
        batch = first.value;
        this.pending.delete(batch.runId);
      }
      this.send(batch);
    }
  }

  private send(batch: Batch): void {
    this.inFlight++;
    this.options.onQuery?.(batch.keys.size);
    this.pool
      .query<[string, number | null, string | null, number[] | null]>({ ...QUERY, values: [batch.runId, [...batch.keys]] })
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
        this.inFlight--;
        // Whatever queued up meanwhile goes out now, as one query per run.
        this.flush();
      });
  }
}
