import { InputError } from '../errors.js';
import { feedsUnsupported } from '../models/inputs.js';
import { withReadOnly, type Pool } from '../db/pool.js';
import { quoteIdent } from '../db/ident.js';
import type { ResolvedJob } from '../definitions/check.js';
import { InferencePool, sharedBytes } from '../inference/pool.js';
import type { InferResult } from '../inference/protocol.js';
import { loadModelBytes } from '../models/registry.js';
import { mappedOutputs, type OutputRef } from '../models/output.js';
import { dateFilter } from '../source/sql.js';
import { fromClause, sourceStatement } from '../source/statement.js';

export interface SampleRow {
  key: string | null;
  features: (number | null)[];
  /** The stored values the run would write; null when the row would be rejected. */
  score: number | null;
  label: string | null;
  outputs: number[] | null;
  /** Why the run would reject this row, if it would. */
  rejected: string | null;
}

function at(result: InferResult, ref: OutputRef, rows: number, i: number): unknown {
  const t = result[ref.output]!;
  const width = Math.max(1, t.data.length / rows);
  return t.data[i * width + (ref.index ?? 0)];
}

/**
 * `prescore run <job> --sample N`: the first N rows of the date (by key), scored in memory as
 * a run would score them, nothing stored: the quick check of a job and model before a backfill.
 */
export async function sampleRun(pool: Pool, job: ResolvedJob, date: string, n: number): Promise<SampleRow[]> {
  const unsupported = feedsUnsupported(job, 'run --sample');
  if (unsupported) throw new InputError(unsupported);
  // The key goes out under another name, so ORDER BY sorts by the column (a bigint as a number).
  const cols = [`${quoteIdent(job.key.name)}::text AS prescore_key`, ...job.features.map((f) => `${quoteIdent(f.name)}::float8`)];
  const { rows } = await withReadOnly(pool, (client) =>
    client.query<Record<string, unknown>>({
      ...sourceStatement(
        `SELECT ${cols.join(', ')} FROM ${fromClause(job)} WHERE ${dateFilter(job, date)} ORDER BY ${quoteIdent(job.key.name)} LIMIT $1`,
        [n],
      ),
      rowMode: 'array',
    } as never),
  );
  const sample: SampleRow[] = (rows as unknown as unknown[][]).map((r) => {
    const features = r.slice(1).map((v) => (v === null ? null : Number(v)));
    const bad = features.findIndex((v) => v === null || !Number.isFinite(v));
    const rejected =
      r[0] === null
        ? 'key is NULL'
        : bad >= 0
          ? `${features[bad] === null ? 'NULL' : String(features[bad])} in column ${job.features[bad]!.name}`
          : null;
    return { key: r[0] as string | null, features, score: null, label: null, outputs: null, rejected };
  });
  const good = sample.filter((s) => s.rejected === null);
  if (good.length === 0) return sample;
  const width = job.features.length;
  const values =
    job.input.type === 'int64'
      ? BigInt64Array.from(good.flatMap((s) => s.features.map((v) => BigInt(Math.trunc(v!)))))
      : job.input.type === 'float64'
        ? Float64Array.from(good.flatMap((s) => s.features as number[]))
        : Float32Array.from(good.flatMap((s) => s.features as number[]));
  const model = sharedBytes(await loadModelBytes(pool, job.model.name, job.model.version));
  const inference = new InferencePool(1);
  try {
    const result = await inference.run({
      sha256: job.model.sha256,
      model,
      inputName: job.input.name,
      inputType: job.input.type,
      fixedBatch: job.input.batch,
      rows: good.length,
      width,
      features: values,
      outputs: mappedOutputs(job.mapping),
    });
    const { score, label, outputs } = job.mapping;
    good.forEach((s, i) => {
      if (score) s.score = Number(at(result, score, good.length, i));
      if (label) s.label = String(at(result, label, good.length, i));
      if (outputs) {
        const t = result[outputs.output]!;
        const w = Math.max(1, t.data.length / good.length);
        s.outputs = Array.from({ length: w }, (_, j) => Number(t.data[i * w + j]));
      }
    });
  } finally {
    await inference.close();
  }
  return sample;
}
