import type { Queryable } from '../pool.js';

/** `prescore.feature_stats`: one row per feature per run, merged from the run's chunks. */
export interface FeatureSummary {
  feature: string;
  count: number;
  nulls: number;
  mean: number | null;
  stddev: number | null;
  min: number | null;
  max: number | null;
}

export async function replaceFeatureStats(db: Queryable, runId: string, stats: FeatureSummary[]): Promise<void> {
  await db.query('DELETE FROM prescore.feature_stats WHERE run_id = $1::bigint', [runId]);
  if (stats.length === 0) return;
  await db.query(
    `INSERT INTO prescore.feature_stats (run_id, feature, count, nulls, mean, stddev, min, max)
     SELECT $1::bigint, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::float8[], $7::float8[], $8::float8[])`,
    [
      runId,
      stats.map((s) => s.feature),
      stats.map((s) => s.count),
      stats.map((s) => s.nulls),
      stats.map((s) => s.mean),
      stats.map((s) => s.stddev),
      stats.map((s) => s.min),
      stats.map((s) => s.max),
    ],
  );
}
