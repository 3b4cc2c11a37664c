import type { Pool } from '../db/pool.js';
import { countRunPredictions, LAYER_PAGE_AFTER, LAYER_PAGE_FIRST, type RunRef } from '../db/sql/layers.js';
import { PAGE_AFTER, PAGE_FIRST, type LookupRow } from '../db/sql/predictions.js';
import { rejectsOfRun } from '../db/sql/rejects.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { StoredPrediction } from './lookup.js';

/**
 * One published run's predictions in memory, compact: key → row index in a Map, scores in a
 * Float64Array, labels as codes into a dictionary, outputs flat in one Float64Array, and the
 * run's keyed rejects with their reasons. A published run never changes, so a copy is right
 * for as long as it exists; which run serves a date is the pointers' business, not this one's.
 *
 * Values are the ones pg parsed from the same columns as the lookup query, so an answer from
 * here is written by the same serializer from the same numbers: byte-identical to PostgreSQL's.
 * (NULL and NaN both become NaN here; the serializer writes both as null, as it does for pg.)
 */
export class MemoryRun {
  /** Estimated bytes held: what the cache's budget counts. */
  bytes = 0;
  /** Last request, for least-recently-used eviction. */
  usedAt = 0;

  constructor(
    readonly runId: string,
    private readonly index: Map<string, number>,
    private readonly scores: Float64Array,
    /** 0 is null, n is labelDict[n - 1]; undefined when every label is null. */
    private readonly labelCodes: Uint32Array | undefined,
    private readonly labelDict: string[],
    /** Row i's outputs are outputValues[outputStart[i], outputStart[i + 1]); start -1: null. */
    private readonly outputStart: Int32Array | undefined,
    private readonly outputEnd: Int32Array | undefined,
    private readonly outputValues: Float64Array | undefined,
    private readonly rejects: Map<string, string>,
  ) {}

  get rows(): number {
    return this.index.size;
  }

  /** The stored prediction of `key`, or undefined when the run has none. */
  get(key: string): StoredPrediction | undefined {
    const i = this.index.get(key);
    if (i === undefined) return undefined;
    const score = this.scores[i]!;
    const code = this.labelCodes ? this.labelCodes[i]! : 0;
    let outputs: number[] | null = null;
    if (this.outputStart) {
      const start = this.outputStart[i]!;
      if (start >= 0) outputs = Array.from(this.outputValues!.subarray(start, this.outputEnd![i]!));
    }
    return { score: Number.isNaN(score) ? null : score, label: code === 0 ? null : this.labelDict[code - 1]!, outputs };
  }

  /** The rows of `keys` this run has, as the lookup returns them. */
  find(keys: readonly string[]): Map<string, StoredPrediction> {
    const found = new Map<string, StoredPrediction>();
    for (const k of keys) {
      const row = this.get(k);
      if (row) found.set(k, row);
    }
    return found;
  }

  /** Why the run rejected `key`, if it did. */
  rejected(key: string): string | undefined {
    return this.rejects.get(key);
  }
}

/** A growable Float64Array. */
class Floats {
  data: Float64Array;
  length = 0;
  constructor(capacity: number) {
    this.data = new Float64Array(Math.max(16, capacity));
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  trimmed(): Float64Array {
    return this.length === this.data.length ? this.data : this.data.slice(0, this.length);
  }
}

/*
 * What one cached row costs beyond its typed-array slots, measured with 1,000,000 rows of
 * decimal keys (bench/api.bench.ts prints the figure): the Map entry and the key string's
 * header. A key's characters count 2 bytes each (V8 keeps Latin-1 in one, the rest in two).
 */
const ROW_OVERHEAD_BYTES = 64;

export interface LoadOptions {
  /** Rows per page query. */
  pageRows: number;
  /** Give up (and return 'too-large') once the estimate passes this many bytes. */
  maxBytes: number;
  /** Stop early (return 'cancelled') when this says so, checked between pages. */
  cancelled?: () => boolean;
  /**
   * After each page, wait this share of the time the page took (query, parsing and copying),
   * so a load takes at most about 1 / (1 + share) of the CPU it shares with the requests being
   * answered (default 0: no pause).
   */
  yieldShare?: number;
  /** How a pause is taken (default: a timer; tests record them). */
  pause?: (ms: number) => Promise<void>;
}

function timerPause(ms: number): Promise<void> {
  return ms >= 1 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** The page of `run`'s predictions after key `last` (undefined: the first page), in key order. */
function pageQuery(run: RunRef, pageRows: number, last: string | undefined) {
  if (run.baseRunId) {
    return last === undefined
      ? ({ ...LAYER_PAGE_FIRST, values: [run.runId, pageRows, run.baseRunId] } as typeof LAYER_PAGE_FIRST & { values: unknown[] })
      : ({ ...LAYER_PAGE_AFTER, values: [run.runId, pageRows, run.baseRunId, last] } as typeof LAYER_PAGE_AFTER & {
          values: unknown[];
        });
  }
  return last === undefined
    ? ({ ...PAGE_FIRST, values: [run.runId, pageRows] } as typeof PAGE_FIRST & { values: unknown[] })
    : ({ ...PAGE_AFTER, values: [run.runId, pageRows, last] } as typeof PAGE_AFTER & { values: unknown[] });
}

/**
 * Reads `run` into memory, page by page: a layer's own rows merged in key order with what it
 * reads through to its base (db/sql/layers.ts). Verifies at the end that it read every row the
 * run has and that the run still exists (retention may drop it meanwhile): a copy that is not
 * whole is never returned.
 */
export async function loadRun(
  pool: Pool,
  run: RunRef,
  options: LoadOptions,
): Promise<MemoryRun | 'too-large' | 'cancelled' | 'gone'> {
  const { runId } = run;
  const total = await countRunPredictions(pool, run);
  const index = new Map<string, number>();
  const scores = new Float64Array(total);
  let labelCodes: Uint32Array | undefined;
  const labelDict: string[] = [];
  const labelIds = new Map<string, number>();
  let outputStart: Int32Array | undefined;
  let outputEnd: Int32Array | undefined;
  const outputValues = new Floats(0);
  let keyBytes = 0;
  let n = 0;
  let last: string | undefined;
  const estimate = () =>
    scores.byteLength +
    (labelCodes?.byteLength ?? 0) +
    (outputStart ? outputStart.byteLength * 2 + outputValues.data.byteLength : 0) +
    keyBytes +
    n * ROW_OVERHEAD_BYTES;
  for (;;) {
    if (options.cancelled?.()) return 'cancelled';
    const pageStarted = performance.now();
    const { rows } = await pool.query<LookupRow>(pageQuery(run, options.pageRows, last));
    for (const [key, score, label, outputs] of rows) {
      // More rows than counted: the run changed under us, which a published run never does.
      if (n >= total) return 'gone';
      index.set(key, n);
      keyBytes += key.length * 2;
      scores[n] = score ?? NaN;
      if (label !== null) {
        labelCodes ??= new Uint32Array(total);
        let code = labelIds.get(label);
        if (code === undefined) {
          labelDict.push(label);
          code = labelDict.length;
          labelIds.set(label, code);
          keyBytes += label.length * 2 + ROW_OVERHEAD_BYTES;
        }
        labelCodes[n] = code;
      }
      if (outputs !== null) {
        if (!outputStart) {
          outputStart = new Int32Array(total).fill(-1);
          outputEnd = new Int32Array(total);
        }
        outputStart[n] = outputValues.length;
        for (const v of outputs) outputValues.push(v ?? NaN);
        outputEnd![n] = outputValues.length;
      }
      n++;
    }
    if (estimate() > options.maxBytes) return 'too-large';
    if (rows.length < options.pageRows) break;
    last = rows[rows.length - 1]![0];
    const pause = (performance.now() - pageStarted) * (options.yieldShare ?? 0);
    if (pause > 0) await (options.pause ?? timerPause)(pause);
  }
  // Fewer rows than counted: the run was detached or dropped while we read it.
  if (n !== total || (total > 0 && (await countRunPredictions(pool, run)) !== total)) return 'gone';
  const rejects = new Map<string, string>();
  for (const r of await rejectsOfRun(pool, runId)) {
    if (rejects.has(r.key)) continue;
    rejects.set(r.key, r.reason);
    keyBytes += (r.key.length + r.reason.length) * 2 + ROW_OVERHEAD_BYTES;
  }
  const copy = new MemoryRun(
    runId,
    index,
    scores,
    labelCodes,
    labelDict,
    outputStart,
    outputEnd,
    outputStart ? outputValues.trimmed() : undefined,
    rejects,
  );
  copy.bytes = estimate();
  return copy;
}

export interface RunCacheOptions {
  /** Bytes of predictions held in memory at most; 0 turns the cache off. */
  budgetBytes: number;
  /** Rows per page while loading (default 5,000: parsing a page holds the event loop). */
  pageRows?: number;
  /** After each page, wait this share of the time it took (default 1: a load takes at most about half the CPU). */
  yieldShare?: number;
  /** Requests for a serving run not in memory after which it is loaded too (default 200). */
  hotRequests?: number;
  /** Told of every load's outcome. */
  onLoad?: (outcome: 'loaded' | 'too-large' | 'gone' | 'failed', ms: number) => void;
}

/**
 * The runs held in memory, by run id, least recently used evicted past the budget. Loads run
 * in the background, one at a time; until a run is loaded its requests go to PostgreSQL.
 *
 * Which run answers is decided by the request's pointer, never here: `get(run)` only says
 * whether that run's copy is in memory. The server asks only while it trusts its pointers (see
 * `hold`), and `retain` drops every run no pointer names any more.
 */
export class RunCache {
  private readonly runs = new Map<string, MemoryRun>();
  private readonly queue: RunRef[] = [];
  private readonly queued = new Set<string>();
  private readonly demand = new Map<string, number>();
  /** Runs that do not fit the budget: logged once, not tried again. */
  private readonly tooLarge = new Set<string>();
  private serving: (runId: string) => boolean = () => true;
  private draining = false;
  /** The run being read now. */
  private current: string | undefined;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private clock = 0;
  bytes = 0;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly options: RunCacheOptions,
  ) {}

  get enabled(): boolean {
    return this.options.budgetBytes > 0;
  }

  get size(): number {
    return this.runs.size;
  }

  get budgetBytes(): number {
    return this.options.budgetBytes;
  }

  has(runId: string): boolean {
    return this.runs.has(runId);
  }

  /** The run's copy, if it is in memory (and marks it used); else counts towards loading it. */
  get(run: RunRef): MemoryRun | undefined {
    const { runId } = run;
    const copy = this.peek(runId);
    if (copy) return copy;
    if (this.enabled) {
      const n = (this.demand.get(runId) ?? 0) + 1;
      if (n >= (this.options.hotRequests ?? 200)) {
        this.demand.delete(runId);
        this.want(run);
      } else this.demand.set(runId, n);
    }
    return undefined;
  }

  /** The run's copy, if it is in memory (and marks it used); counts nothing towards loading it. */
  peek(runId: string): MemoryRun | undefined {
    const run = this.runs.get(runId);
    if (run) run.usedAt = ++this.clock;
    return run;
  }

  /**
   * Loads `run` in the background (a layer with what it reads through to its base), unless it is
   * in memory, queued, or known too large.
   */
  want(run: RunRef): void {
    const { runId } = run;
    if (!this.enabled || this.closed || this.runs.has(runId) || this.queued.has(runId) || this.current === runId) return;
    if (this.tooLarge.has(runId)) return;
    this.queued.add(runId);
    this.queue.push(run);
    if (!this.draining) {
      this.draining = true;
      void this.drain();
    }
  }

  /**
   * Keeps only the runs `isServing` names (in memory, queued, and counted for demand). Called
   * after every pointer reload, with the pointers as they now are.
   */
  retain(isServing: (runId: string) => boolean): void {
    this.serving = isServing;
    for (const [id, run] of this.runs) if (!isServing(id)) this.evict(run, 'no longer serving');
    for (const id of [...this.queued]) if (!isServing(id)) this.queued.delete(id);
    for (const id of [...this.demand.keys()]) if (!isServing(id)) this.demand.delete(id);
    for (const id of [...this.tooLarge]) if (!isServing(id)) this.tooLarge.delete(id);
  }

  /** Drops one run's copy now (its pointer is moving). */
  drop(runId: string): void {
    const run = this.runs.get(runId);
    if (run) this.evict(run, 'pointer moved');
  }

  /** Resolves when no load is running or queued. */
  idle(): Promise<void> {
    if (!this.draining) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops loading (the load in flight ends at its next page) and frees every copy. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    this.queued.clear();
    await this.idle();
    this.runs.clear();
    this.bytes = 0;
  }

  private evict(run: MemoryRun, why: string): void {
    this.runs.delete(run.runId);
    this.bytes -= run.bytes;
    this.log.debug({ runId: run.runId, bytes: run.bytes, why }, 'run dropped from memory');
  }

  // Never throws.
  private async drain(): Promise<void> {
    for (;;) {
      const run = this.queue.shift();
      if (run === undefined || this.closed) break;
      const { runId } = run;
      this.queued.delete(runId);
      if (this.runs.has(runId) || !this.serving(runId)) continue;
      this.current = runId;
      const started = performance.now();
      let outcome: 'loaded' | 'too-large' | 'gone' | 'failed' = 'failed';
      try {
        const result = await loadRun(this.pool, run, {
          pageRows: this.options.pageRows ?? 5_000,
          yieldShare: this.options.yieldShare ?? 1,
          maxBytes: this.options.budgetBytes,
          cancelled: () => this.closed || !this.serving(runId),
        });
        const ms = Math.round(performance.now() - started);
        if (result === 'too-large') {
          outcome = 'too-large';
          this.tooLarge.add(runId);
          this.log.warn(
            { runId, budgetBytes: this.options.budgetBytes },
            'run is larger than the API memory budget (serve --cache-mb / PRESCORE_API_CACHE_MB); it is answered from PostgreSQL',
          );
        } else if (result === 'gone' || result === 'cancelled') {
          outcome = 'gone';
        } else if (!this.closed && this.serving(runId)) {
          this.admit(result);
          outcome = 'loaded';
          this.log.info({ runId, rows: result.rows, bytes: result.bytes, ms }, 'run loaded into memory');
        }
      } catch (err) {
        this.log.warn({ err: errorMessage(err), runId }, 'could not load a run into memory; PostgreSQL answers it');
      }
      this.current = undefined;
      this.options.onLoad?.(outcome, performance.now() - started);
    }
    this.draining = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Makes room (least recently used first) and adds the run. */
  private admit(run: MemoryRun): void {
    while (this.bytes + run.bytes > this.options.budgetBytes && this.runs.size > 0) {
      let oldest: MemoryRun | undefined;
      for (const r of this.runs.values()) if (!oldest || r.usedAt < oldest.usedAt) oldest = r;
      this.evict(oldest!, 'least recently used');
    }
    run.usedAt = ++this.clock;
    this.runs.set(run.runId, run);
    this.bytes += run.bytes;
  }
}
