import type { FeatureSummary } from '../db/sql/stats.js';
import type { FeatureStats } from './decode.js';

/** What a chunk stores per feature: its running sums, so chunks merge exactly. */
export interface ChunkFeatureStats {
  feature: string;
  count: number;
  nulls: number;
  sum: number;
  sumSq: number;
  min: number | null;
  max: number | null;
}

/** Merges the chunks' sums per feature and turns them into count, mean, stddev, min, max. */
export function summarizeFeatures(chunks: ChunkFeatureStats[][]): FeatureSummary[] {
  const merged = new Map<string, FeatureStats>();
  for (const list of chunks) {
    for (const s of list) {
      const m = merged.get(s.feature) ?? { count: 0, nulls: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity };
      m.count += s.count;
      m.nulls += s.nulls;
      m.sum += s.sum;
      m.sumSq += s.sumSq;
      if (s.min !== null && s.min < m.min) m.min = s.min;
      if (s.max !== null && s.max > m.max) m.max = s.max;
      merged.set(s.feature, m);
    }
  }
  return [...merged].map(([feature, s]) => {
    const mean = s.count ? s.sum / s.count : null;
    const variance = s.count > 1 && mean !== null ? Math.max(0, (s.sumSq - s.count * mean * mean) / (s.count - 1)) : null;
    return {
      feature,
      count: s.count,
      nulls: s.nulls,
      mean,
      stddev: variance === null ? null : Math.sqrt(variance),
      min: s.count ? s.min : null,
      max: s.count ? s.max : null,
    };
  });
}
