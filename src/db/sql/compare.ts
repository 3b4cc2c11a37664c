import type { Queryable } from '../pool.js';
import { runRef } from './layers.js';
import { challengerPartitionTable, hasChallengerPartition, partitionExists, partitionTable } from './partitions.js';

/**
 * `prescore runs compare`: each challenger of a run against its champion, on the run's own
 * rows, computed in PostgreSQL (aggregates, rank windows, width_bucket): Node receives one row
 * of figures and ten PSI bins per challenger, never the predictions.
 */

/** PSI bins: the champion's deciles (percentile_cont at 0.1 .. 0.9) as the nine inner edges. */
export const PSI_QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/** An empty bin's share is taken as this, so ln() stays finite. */
export const PSI_EPSILON = 1e-4;
/** The share of keys, by score, whose overlap `top` measures: the top 10%. */
export const TOP_SHARE = 0.1;

export interface ScoreMoments {
  mean: number | null;
  stddev: number | null;
}

export interface PsiBin {
  /** Scores in [lower, upper); null: unbounded. */
  lower: number | null;
  upper: number | null;
  champion: number;
  challenger: number;
}

export interface Comparison {
  slot: number;
  ref: string;
  model: { name: string; version: number };
  /** Keys both the champion and this challenger stored a prediction for: what every figure is over. */
  keys: number;
  champion: ScoreMoments;
  challenger: ScoreMoments;
  pearson: number | null;
  spearman: number | null;
  meanAbsDiff: number | null;
  /** Share of keys with equal labels; null when the job stores no label. */
  labelAgreement: number | null;
  /** Share of the champion's top-10% keys (ceil(keys / 10), ties by key) also in the challenger's. */
  top10Overlap: number | null;
  psi: number | null;
  psiBins: PsiBin[];
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

function joined(runId: string): string {
  return `SELECT p.key, p.score AS c, h.score AS h, p.label AS cl, h.label AS hl
            FROM ${partitionTable(runId)} p JOIN ${challengerPartitionTable(runId)} h ON h.key = p.key AND h.slot = $1`;
}

async function figures(db: Queryable, runId: string, slot: number) {
  const { rows } = await db.query<Record<string, string | number | null>>(
    `WITH j AS (${joined(runId)}),
     r AS (
       SELECT c, h, cl, hl,
              -- tied scores share the mean of their ranks (Spearman's convention)
              (rank() OVER (ORDER BY c) + (count(*) OVER (PARTITION BY c) - 1) / 2.0)::float8 AS rc,
              (rank() OVER (ORDER BY h) + (count(*) OVER (PARTITION BY h) - 1) / 2.0)::float8 AS rh,
              row_number() OVER (ORDER BY c DESC, key) AS tc,
              row_number() OVER (ORDER BY h DESC, key) AS th,
              ceil(count(*) OVER () * $2::float8) AS k
         FROM j)
     SELECT count(*) AS keys, count(c) FILTER (WHERE h IS NOT NULL) AS scored,
            avg(c) AS c_mean, stddev_samp(c) AS c_sd, avg(h) AS h_mean, stddev_samp(h) AS h_sd,
            corr(c, h) AS pearson, corr(rc, rh) AS spearman, avg(abs(c - h)) AS mad,
            (avg(CASE WHEN cl = hl THEN 1.0 ELSE 0.0 END) FILTER (WHERE cl IS NOT NULL AND hl IS NOT NULL))::float8 AS labels,
            count(*) FILTER (WHERE tc <= k AND th <= k)::float8 / nullif(max(k), 0) AS top
       FROM r`,
    [slot, TOP_SHARE],
  );
  return rows[0]!;
}

async function psiBins(db: Queryable, runId: string, slot: number): Promise<{ psi: number | null; bins: PsiBin[] }> {
  const { rows } = await db.query<{ bin: number; edges: number[] | null; nc: string; nh: string; psi: number | null }>(
    `WITH j AS (${joined(runId)} WHERE p.score IS NOT NULL AND h.score IS NOT NULL),
     e AS (SELECT percentile_cont($2::float8[]) WITHIN GROUP (ORDER BY c) AS edges, count(*)::float8 AS n FROM j),
     -- width_bucket: the number of edges <= the score, 0..9
     b AS (SELECT width_bucket(j.c, e.edges) AS bc, width_bucket(j.h, e.edges) AS bh FROM j, e),
     g AS (
       SELECT g.bin, e.edges, coalesce(pc.n, 0) AS nc, coalesce(ph.n, 0) AS nh,
              greatest(coalesce(pc.n, 0) / nullif(e.n, 0), $3::float8) AS sc,
              greatest(coalesce(ph.n, 0) / nullif(e.n, 0), $3::float8) AS sh
         FROM generate_series(0, $4::int) AS g(bin) CROSS JOIN e
         LEFT JOIN (SELECT bc AS bin, count(*) AS n FROM b GROUP BY 1) pc ON pc.bin = g.bin
         LEFT JOIN (SELECT bh AS bin, count(*) AS n FROM b GROUP BY 1) ph ON ph.bin = g.bin)
     SELECT bin, edges, nc, nh, sum((sh - sc) * ln(sh / sc)) OVER () AS psi FROM g ORDER BY bin`,
    [slot, PSI_QUANTILES, PSI_EPSILON, PSI_QUANTILES.length],
  );
  const total = rows.reduce((a, r) => a + Number(r.nc), 0);
  if (total === 0) return { psi: null, bins: [] };
  const edges = rows[0]!.edges!;
  return {
    psi: rows[0]!.psi,
    bins: rows.map((r) => ({
      lower: r.bin === 0 ? null : edges[r.bin - 1]!,
      upper: r.bin === edges.length ? null : edges[r.bin]!,
      champion: Number(r.nc) / total,
      challenger: Number(r.nh) / total,
    })),
  };
}

export interface RunComparison {
  runId: string;
  champion: { ref: string; name: string; version: number };
  comparisons: Comparison[];
}

/**
 * Compares each challenger of the run with its champion. Undefined when the run has no stored
 * predictions (dropped by retention, cancelled, or never scored); `comparisons` is empty when
 * it scored no challengers.
 */
export async function compareRun(db: Queryable, runId: string): Promise<RunComparison | undefined> {
  const { rows: models } = await db.query<{ slot: number; ref: string; model_name: string; model_version: number }>(
    'SELECT slot, ref, model_name, model_version FROM prescore.run_models WHERE run_id = $1::bigint ORDER BY slot',
    [runId],
  );
  const champ = models.find((m) => m.slot === 0);
  const out: RunComparison = {
    runId,
    champion: champ
      ? { ref: champ.ref, name: champ.model_name, version: champ.model_version }
      : { ref: '', name: '', version: 0 },
    comparisons: [],
  };
  const challengers = models.filter((m) => m.slot > 0);
  if (challengers.length === 0) return out;
  // The figures join the run's own tables: a run with challengers always stores all its rows
  // (only a job without challengers is layered, layers.ts), so a layer here is a bug upstream.
  const base = (await runRef(db, runId)).baseRunId;
  if (base) throw new Error(`run ${runId} scored challengers but reads through to run ${base}: cannot compare a layer`);
  if (!(await partitionExists(db, runId)) || !(await hasChallengerPartition(db, runId))) return undefined;
  for (const m of challengers) {
    const f = await figures(db, runId, m.slot);
    const scored = Number(f.scored) > 0;
    const psi = await psiBins(db, runId, m.slot);
    out.comparisons.push({
      slot: m.slot,
      ref: m.ref,
      model: { name: m.model_name, version: m.model_version },
      keys: Number(f.keys),
      champion: { mean: num(f.c_mean!), stddev: num(f.c_sd!) },
      challenger: { mean: num(f.h_mean!), stddev: num(f.h_sd!) },
      pearson: num(f.pearson!),
      spearman: scored ? num(f.spearman!) : null,
      meanAbsDiff: num(f.mad!),
      labelAgreement: num(f.labels!),
      top10Overlap: scored ? num(f.top!) : null,
      psi: psi.psi,
      psiBins: psi.bins,
    });
  }
  return out;
}
