import type { InferencePool } from '../inference/pool.js';
import type { InferResult } from '../inference/protocol.js';
import { mapRows, outputsOf, type ScoredRow, type ScoringModel } from './model.js';

export interface BatcherOptions {
  /**
   * How long the first rows of a batch wait for more (ms). 0 turns batching off: every
   * request is one inference call of its own.
   */
  windowMs: number;
  /** Rows in one inference call at most (requests are never split: one bigger than this goes alone). */
  maxRows: number;
  /** Inference calls in flight per model at once; while they are all busy, new rows wait and join the next call. */
  maxInFlight: number;
  /** Told of each inference call: the job, its rows and how many requests they came from. */
  onBatch?(job: string, rows: number, requests: number): void;
}

interface Part {
  values: Float64Array;
  rows: number;
  resolve(rows: ScoredRow[]): void;
  reject(err: unknown): void;
}

/** The rows waiting for one (job, model version), and its calls in flight. */
interface Queue {
  id: string;
  model: ScoringModel;
  parts: Part[];
  rows: number;
  timer: NodeJS.Timeout | undefined;
  inFlight: number;
}

/**
 * Micro-batching of sent rows: the requests for one job and model version that arrive within
 * `windowMs` of each other, or while the model's inference calls are busy, are scored by ONE
 * inference call, and each request gets its own rows back. An inference call costs a thread
 * hop and a session run whatever its size, so fifty one-row requests cost about one call,
 * not fifty.
 */
export class ScoreBatcher {
  private readonly queues = new Map<string, Queue>();
  private closed = false;

  constructor(
    private readonly inference: () => InferencePool,
    private readonly options: BatcherOptions,
  ) {}

  /** Scores `rows` rows of `values` (row-major, the model's features in order) with `model`. */
  score(model: ScoringModel, values: Float64Array, rows: number): Promise<ScoredRow[]> {
    if (this.closed) return Promise.reject(new Error('scoring is shut down'));
    return new Promise<ScoredRow[]>((resolve, reject) => {
      const part: Part = { values, rows, resolve, reject };
      if (this.options.windowMs <= 0) {
        this.send(model, [part], rows);
        return;
      }
      const id = `${model.job}\0${model.sha256}`;
      let q = this.queues.get(id);
      if (!q) {
        q = { id, model, parts: [], rows: 0, timer: undefined, inFlight: 0 };
        this.queues.set(id, q);
      }
      q.parts.push(part);
      q.rows += rows;
      if (q.rows >= this.options.maxRows) this.flush(q);
      else if (!q.timer && q.inFlight < this.options.maxInFlight) {
        const queue = q;
        q.timer = setTimeout(() => {
          queue.timer = undefined;
          this.flush(queue);
        }, this.options.windowMs);
      }
    });
  }

  /** Fails what waits; calls in flight still answer. Idempotent. */
  close(): void {
    this.closed = true;
    for (const q of this.queues.values()) {
      clearTimeout(q.timer);
      for (const p of q.parts.splice(0)) p.reject(new Error('scoring is shut down'));
    }
    this.queues.clear();
  }

  private flush(q: Queue): void {
    clearTimeout(q.timer);
    q.timer = undefined;
    while (q.parts.length > 0 && q.inFlight < this.options.maxInFlight) {
      const take: Part[] = [];
      let rows = 0;
      while (q.parts.length > 0 && (take.length === 0 || rows + q.parts[0]!.rows <= this.options.maxRows)) {
        const p = q.parts.shift()!;
        take.push(p);
        rows += p.rows;
      }
      q.rows -= rows;
      q.inFlight++;
      this.send(q.model, take, rows).finally(() => {
        q.inFlight--;
        // Rows that came in meanwhile have waited long enough: they go out now, together.
        if (q.parts.length > 0) this.flush(q);
        else if (q.inFlight === 0 && this.queues.get(q.id) === q) this.queues.delete(q.id);
      });
    }
  }

  private async send(model: ScoringModel, parts: Part[], rows: number): Promise<void> {
    this.options.onBatch?.(model.job, rows, parts.length);
    const width = model.features.length;
    let result: InferResult;
    try {
      result = await this.inference().run({
        sha256: model.sha256,
        model: model.bytes,
        inputName: model.input.name,
        inputType: model.input.type,
        fixedBatch: model.input.batch,
        rows,
        width,
        features: tensorValues(model.input.type, parts, rows * width),
        outputs: outputsOf(model),
      });
    } catch (err) {
      for (const p of parts) p.reject(err);
      return;
    }
    let from = 0;
    for (const p of parts) {
      try {
        p.resolve(mapRows(model.mapping, result, rows, from, p.rows));
      } catch (err) {
        p.reject(err);
      }
      from += p.rows;
    }
  }
}

/** The parts' values, one after another, in the model's input type (float32 rounds as a COPY into real would). */
function tensorValues(
  type: ScoringModel['input']['type'],
  parts: Part[],
  length: number,
): Float32Array | Float64Array | BigInt64Array {
  if (type === 'int64') {
    const out = new BigInt64Array(length);
    let at = 0;
    for (const p of parts) for (let i = 0; i < p.values.length; i++) out[at++] = BigInt(p.values[i]!);
    return out;
  }
  if (type === 'float64' && parts.length === 1) return parts[0]!.values;
  const out = type === 'float32' ? new Float32Array(length) : new Float64Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p.values, at);
    at += p.values.length;
  }
  return out;
}
