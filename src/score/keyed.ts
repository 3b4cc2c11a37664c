import type { PoolClient } from '../db/pool.js';
import { rejectReasons } from '../db/sql/rejects.js';
import type { InferencePool } from '../inference/pool.js';
import { readKeys, type KeyRows } from '../source/keys.js';
import { mapRows, outputsOf, type ScoredRow, type ScoringModel } from './model.js';
import type { PinnedRun } from './pinned.js';

/**
 * Scoring a few keys of a published run as the run would have scored them: the rows of its
 * date read through the chunk reader's decoder, scored with its pinned model and mapping. Shared
 * by compute on miss (in the API, src/api/miss.ts) and enqueue on miss (in a queue worker,
 * src/queue/late.ts).
 */

/** A key's fate in the source: its values as a run would store them, or why a run would reject it. */
export type KeyOutcome = { row: Omit<ScoredRow, 'rejected'> } | { rejected: string };

/**
 * The good rows of `keys` on the run's date (their features packed for the model), noting in
 * `outcomes` the keys a run would reject and why. `client` is in a READ ONLY transaction. Only
 * a row whose key text is exactly one asked for counts, as in the stored lookup.
 */
export async function readRunKeys(
  client: PoolClient,
  run: PinnedRun,
  keys: readonly string[],
  outcomes: Map<string, KeyOutcome>,
): Promise<Pick<KeyRows, 'keys' | 'features'>> {
  const rows = await readKeys(client, run.job, run.date, keys, run.checked);
  run.checked = true;
  const asked = new Set(keys);
  for (const r of rows.rejects) if (r.key !== null && asked.has(r.key)) outcomes.set(r.key, { rejected: r.reason });
  if (rows.keys.every((k) => asked.has(k))) return rows;
  // A key that matched through its type (numeric 1.0 for "1"): not the key asked for.
  return onlyAsked(rows, asked, run.job.features.length);
}

/**
 * The keys the run rejected first (they keep the run's reason, not scored again), then the
 * others' good rows from the source (readRunKeys), noting each key's reject in `outcomes`.
 * `client` is in a READ ONLY transaction.
 */
export async function readMissingKeys(
  client: PoolClient,
  run: PinnedRun,
  keys: readonly string[],
  outcomes: Map<string, KeyOutcome>,
): Promise<Pick<KeyRows, 'keys' | 'features'>> {
  if (run.rejected) {
    for (const [k, reason] of await rejectReasons(client, run.runId, keys)) outcomes.set(k, { rejected: reason });
  }
  const wanted = outcomes.size > 0 ? keys.filter((k) => !outcomes.has(k)) : keys;
  if (wanted.length === 0) return { keys: [], features: new Float32Array(0) };
  return readRunKeys(client, run, wanted, outcomes);
}

/** One inference call for the rows read; each key's outcome goes into `outcomes`. */
export async function scoreRunKeys(
  inference: InferencePool,
  m: ScoringModel,
  read: Pick<KeyRows, 'keys' | 'features'>,
  outcomes: Map<string, KeyOutcome>,
): Promise<void> {
  if (read.keys.length === 0) return;
  const result = await inference.run({
    sha256: m.sha256,
    model: m.bytes,
    inputName: m.input.name,
    inputType: m.input.type,
    fixedBatch: m.input.batch,
    rows: read.keys.length,
    width: m.features.length,
    features: read.features,
    outputs: outputsOf(m),
  });
  const scored = mapRows(m.mapping, result, read.keys.length, 0, read.keys.length);
  read.keys.forEach((k, i) => {
    const s = scored[i]!;
    if (s.rejected !== undefined) outcomes.set(k, { rejected: s.rejected });
    else outcomes.set(k, { row: { score: s.score, label: s.label, outputs: s.outputs } });
  });
}

/** The rows whose key text is one asked for, features packed again. */
function onlyAsked(rows: KeyRows, asked: Set<string>, width: number): Pick<KeyRows, 'keys' | 'features'> {
  const keep: number[] = [];
  rows.keys.forEach((k, i) => asked.has(k) && keep.push(i));
  const src = rows.features;
  const packed =
    src instanceof BigInt64Array
      ? new BigInt64Array(keep.length * width)
      : new (src.constructor as Float64ArrayConstructor)(keep.length * width);
  keep.forEach((i, j) => (packed as Float64Array).set((src as Float64Array).subarray(i * width, (i + 1) * width), j * width));
  return { keys: keep.map((i) => rows.keys[i]!), features: packed };
}
