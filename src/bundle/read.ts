import { tableFromIPC, type Table, type Vector } from 'apache-arrow';
import type { StoredPrediction } from '../api/lookup.js';
import type { Pointer } from '../api/pointers.js';
import { keyProblem } from '../api/validate.js';
import { HttpError } from '../errors.js';
import { sharedBytes } from '../inference/pool.js';
import { feedsUnsupported } from '../models/inputs.js';
import { InferencePool } from '../inference/pool.js';
import { ScoreBatcher } from '../score/batcher.js';
import type { ScoredRow, ScoringModel } from '../score/model.js';
import { parseScoreBody } from '../score/rows.js';
import { MODEL_FILE, PREDICTIONS_FILE, REJECTS_FILE, verifyBundle, type Manifest } from './manifest.js';

/** The read API's key limit, so a bundle refuses what `prescore serve` refuses. */
const KEY_LIMITS = { maxKeys: 1000, maxKeyBytes: 512 };

interface Segment {
  offsets: Int32Array;
  bytes: Uint8Array;
  rows: number;
  /** Row index of the segment's first row in the table. */
  start: number;
  last: Buffer;
}

/**
 * The keys of an Arrow table in byte order (as exported: PostgreSQL's "C" collation), found by
 * binary search over the key column's own buffers: no index is built, memory is the file.
 */
class SortedKeys {
  private readonly segments: Segment[] = [];

  constructor(table: Table) {
    let start = 0;
    for (const batch of table.batches) {
      const data = batch.getChild('key')!.data[0]!;
      if (batch.numRows === 0) continue;
      const offsets = data.valueOffsets as Int32Array;
      const bytes = data.values as Uint8Array;
      const rows = batch.numRows;
      const last = Buffer.from(bytes.buffer, bytes.byteOffset + offsets[rows - 1]!, offsets[rows]! - offsets[rows - 1]!);
      this.segments.push({ offsets, bytes, rows, start, last });
      start += rows;
    }
  }

  /** The row index of `key`, or -1. */
  find(key: string): number {
    const want = Buffer.from(key, 'utf8');
    let lo = 0;
    let hi = this.segments.length - 1;
    // The first segment whose last key is >= want.
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare(this.segments[mid]!.last, want) < 0) lo = mid + 1;
      else hi = mid;
    }
    const s = this.segments[lo];
    if (!s) return -1;
    let a = 0;
    let b = s.rows - 1;
    while (a <= b) {
      const mid = (a + b) >> 1;
      const o = s.offsets[mid]!;
      const c = Buffer.compare(Buffer.from(s.bytes.buffer, s.bytes.byteOffset + o, s.offsets[mid + 1]! - o), want);
      if (c === 0) return s.start + mid;
      if (c < 0) a = mid + 1;
      else b = mid - 1;
    }
    return -1;
  }
}

/**
 * A verified bundle in memory: lookups of its predictions and rejects, and what scoring sent
 * features needs. What `prescore serve --bundle` and `openBundle` answer from.
 */
export class BundleStore {
  readonly pointer: Pointer;
  readonly model: ScoringModel;
  private readonly keys: SortedKeys;
  private readonly rejectKeys: SortedKeys;
  private readonly score: Vector;
  private readonly label: Vector;
  private readonly outputs: Vector;
  private readonly reasons: Vector;

  constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    files: Map<string, Buffer>,
  ) {
    const predictions = tableFromIPC(files.get(PREDICTIONS_FILE)!);
    const rejects = tableFromIPC(files.get(REJECTS_FILE)!);
    this.keys = new SortedKeys(predictions);
    this.rejectKeys = new SortedKeys(rejects);
    this.score = predictions.getChild('score')!;
    this.label = predictions.getChild('label')!;
    this.outputs = predictions.getChild('outputs')!;
    this.reasons = rejects.getChild('reason')!;
    const m = manifest;
    this.pointer = {
      job: m.job,
      date: m.date,
      runId: m.runId,
      baseRunId: null, // a bundle holds all the rows it serves
      model: { name: m.model.name, version: m.model.version },
      publishedAt: Date.parse(m.publishedAt),
    };
    this.model = {
      job: m.job,
      name: m.model.name,
      version: m.model.version,
      sha256: m.model.sha256,
      bytes: sharedBytes(files.get(MODEL_FILE)!),
      input: m.input,
      features: m.features,
      mapping: m.mapping,
    };
  }

  /** Why scoring sent features is refused for this bundle (`what`: the caller, for the message), or null. */
  scoreUnsupported(what: string): string | null {
    return feedsUnsupported({ name: this.manifest.job, feeds: this.manifest.feeds }, what);
  }

  /** Reads and verifies `dir` (see verifyBundle). */
  static open(dir: string, expectSha256?: string): BundleStore {
    const { manifest, files } = verifyBundle(dir, expectSha256);
    return new BundleStore(dir, manifest, files);
  }

  /** The stored prediction of `key`, as the database's lookup returns it. */
  find(key: string): StoredPrediction | undefined {
    const i = this.keys.find(key);
    if (i < 0) return undefined;
    const o = this.outputs.get(i) as Vector | null;
    return {
      score: this.score.get(i) as number | null,
      label: this.label.get(i) as string | null,
      outputs: o === null ? null : Array.from(o.toArray() as Float64Array),
    };
  }

  /** Why the run rejected `key`, if it did. */
  rejectReason(key: string): string | undefined {
    const i = this.rejectKeys.find(key);
    return i < 0 ? undefined : (this.reasons.get(i) as string);
  }
}

/** One prediction, the shape of the read API's GET body. */
export interface BundlePrediction {
  job: string;
  key: string;
  asOf: string;
  runId: string;
  model: { name: string; version: number };
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/** One scored row, the shape of an item of POST /v1/score's body. */
export interface ScoredPrediction {
  key: string;
  model: { name: string; version: number };
  score: number | null;
  label: string | null;
  outputs: number[] | null;
  /** Set when a run would have rejected the row (a model output that is not finite). */
  rejected?: string;
}

export interface Bundle {
  /** The bundle's manifest: job, date, run id, model, features, output mapping, file hashes. */
  readonly manifest: Manifest;
  /** The prediction of `key`, or undefined when the run has none (`rejected(key)` says why, if it rejected it). */
  get(key: string): BundlePrediction | undefined;
  /** The predictions of `keys` in order, and the keys without one: the read API's POST body. */
  getMany(keys: readonly string[]): { predictions: BundlePrediction[]; missing: string[] };
  /** Why the run rejected `key`, if it did. */
  rejected(key: string): string | undefined;
  /**
   * Scores sent features with the bundled model and the job's output mapping, in worker
   * threads (started with the first call): `rows` as POST /v1/score takes them. Throws an
   * error naming the row, its key and the feature when a row does not fit the job.
   */
  score(rows: readonly { key: string; features: Record<string, number> }[]): Promise<ScoredPrediction[]>;
  /** Stops the inference threads. Idempotent. */
  close(): Promise<void>;
}

export interface OpenBundleOptions {
  /** The sha256 of manifest.json the caller trusts (printed by `prescore export`): any other bundle is refused. */
  sha256?: string;
  /** Inference threads for score() (default 1). */
  inferenceThreads?: number;
}

/**
 * Opens an exported bundle (`prescore export <job> --out DIR`) for lookups and local scoring,
 * with no database. Every file is checked against the manifest first: a missing, corrupted or
 * changed file is refused with an error naming it.
 */
export async function openBundle(dir: string, options: OpenBundleOptions = {}): Promise<Bundle> {
  const store = BundleStore.open(dir, options.sha256);
  const { pointer } = store;
  const threads = options.inferenceThreads ?? 1;
  let inference: InferencePool | undefined;
  const batcher = new ScoreBatcher(() => (inference ??= new InferencePool(threads)), {
    windowMs: 0,
    maxRows: Infinity,
    maxInFlight: threads,
  });
  const item = (key: string, r: StoredPrediction): BundlePrediction => ({
    job: pointer.job,
    key,
    asOf: pointer.date,
    runId: pointer.runId,
    model: { ...pointer.model },
    score: r.score,
    label: r.label,
    outputs: r.outputs,
  });
  let closing: Promise<void> | undefined;
  return {
    manifest: store.manifest,
    get(key) {
      const r = store.find(key);
      return r && item(key, r);
    },
    getMany(keys) {
      const predictions: BundlePrediction[] = [];
      const missing: string[] = [];
      for (const key of keys) {
        const r = store.find(key);
        if (r) predictions.push(item(key, r));
        else missing.push(key);
      }
      return { predictions, missing };
    },
    rejected: (key) => store.rejectReason(key),
    async score(rows) {
      const unsupported = store.scoreUnsupported('openBundle().score()');
      if (unsupported) throw new TypeError(unsupported);
      const model = store.model;
      let parsed;
      try {
        parsed = parseScoreBody({ rows }, model.features, model.input.type, {
          maxRows: Infinity,
          keyProblem: (k) => keyProblem(k, KEY_LIMITS),
        });
      } catch (err) {
        throw err instanceof HttpError
          ? new TypeError(
              `score(): ${err.message.replace(/^rows must be an array of 1 to Infinity rows/, 'rows must be a non-empty array of rows')}`,
            )
          : err;
      }
      const scored: ScoredRow[] = await batcher.score(model, parsed.values, parsed.keys.length);
      return scored.map((r, i) => {
        const p: ScoredPrediction = {
          key: parsed.keys[i]!,
          model: { ...pointer.model },
          score: r.score,
          label: r.label,
          outputs: r.outputs,
        };
        if (r.rejected !== undefined) {
          p.score = p.label = p.outputs = null;
          p.rejected = r.rejected;
        }
        return p;
      });
    },
    close: () =>
      (closing ??= (async () => {
        batcher.close();
        await inference?.close();
      })()),
  };
}
