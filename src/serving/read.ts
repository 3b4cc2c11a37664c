import type { Pool } from '../db/pool.js';

export interface Prediction {
  job: string;
  key: string;
  asOf: string;
  runId: string;
  model: { name: string; version: number };
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

/**
 * Published predictions of a job for some keys: from the given date's serving run, or the
 * newest published date. Only runs behind the serving pointer are ever read, so a run in
 * progress or failed is invisible.
 */
export async function readPredictions(
  pool: Pool,
  job: string,
  keys: string[],
  asOf?: string,
): Promise<{ predictions: Prediction[]; missing: string[] }> {
  const { rows } = await pool.query<{
    key: string;
    score: number | null;
    label: string | null;
    outputs: number[] | null;
    date: string;
    run_id: string;
    model_name: string;
    model_version: number;
  }>(
    `WITH s AS (
       SELECT s.date::text, s.run_id, r.model_name, r.model_version
         FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id
        WHERE s.job = $1 AND ($2::date IS NULL OR s.date = $2::date)
        ORDER BY s.date DESC LIMIT 1)
     SELECT p.key, p.score, p.label, p.outputs, s.date, s.run_id::text, s.model_name, s.model_version
       FROM s JOIN prescore.predictions p ON p.run_id = s.run_id AND p.key = ANY ($3::text[])`,
    [job, asOf ?? null, keys],
  );
  const byKey = new Map(rows.map((r) => [r.key, r]));
  const predictions: Prediction[] = [];
  const missing: string[] = [];
  for (const key of keys) {
    const r = byKey.get(key);
    if (!r) {
      missing.push(key);
      continue;
    }
    predictions.push({
      job,
      key,
      asOf: r.date,
      runId: r.run_id,
      model: { name: r.model_name, version: r.model_version },
      score: r.score,
      label: r.label,
      outputs: r.outputs,
    });
  }
  return { predictions, missing };
}
