import { quoteIdent } from '../ident.js';
import type { Queryable } from '../pool.js';
import { runPredictionsOf } from './layers.js';

/**
 * Model quality against observed outcomes, computed in PostgreSQL in one statement: the run
 * serving each date of the range (champion rows from prescore.predictions, a layer's read through
 * to its base as layers.ts says; challenger rows from prescore.challenger_predictions named by
 * prescore.run_models), joined on (key, date) with the
 * outcomes, aggregated per model version and date and per model version over the range. Only
 * aggregates come back: no prediction row is loaded into Node.
 */

/** Probabilities are clipped to [EPS, 1 - EPS] for log loss, as scikit-learn did. */
export const LOG_LOSS_EPS = 1e-15;
export const CALIBRATION_BINS = 10;

export interface OutcomesFrom {
  /** The FROM item (a quoted table, or the query in parentheses), already checked. */
  from: string;
  key: string;
  date: { name: string; typname: string };
  outcome: { name: string; typname: string };
  /** For a timestamptz date column: the time zone whose calendar day it is matched on. */
  timeZone: string;
}

export interface GroupRow {
  model_name: string;
  model_version: number;
  date: string | null;
  matched: string;
  positives: number;
  non_binary: string;
  non_binary_example: string | null;
  log_loss: number | null;
  accuracy: number | null;
  rmse: number | null;
  mae: number | null;
  mean_score: number | null;
  mean_outcome: number | null;
  auc: number | null;
  bins: { bin: number; count: number; meanPredicted: number; observedRate: number }[] | null;
}

function outcomeSelect(o: OutcomesFrom): string {
  // Unqualified: the FROM item is the table or the query (aliased prescore_source).
  const col = quoteIdent(o.date.name);
  const day =
    o.date.typname === 'date' ? col : o.date.typname === 'timestamptz' ? `(${col} AT TIME ZONE $4)::date` : `${col}::date`;
  const y = quoteIdent(o.outcome.name);
  const value = o.outcome.typname === 'bool' ? `CASE WHEN ${y} THEN 1.0::float8 ELSE 0.0::float8 END` : `${y}::float8`;
  const key = quoteIdent(o.key);
  return `SELECT ${key}::text COLLATE "C" AS key, ${day} AS date, ${value} AS y
            FROM ${o.from}
           WHERE ${day} BETWEEN $2::date AND $3::date AND ${key} IS NOT NULL AND ${y} IS NOT NULL AND $4::text IS NOT NULL`;
}

/** The statement and its values ($1 job, $2 from, $3 to, $4 time zone). */
export function evaluationStatement(job: string, from: string, to: string, o: OutcomesFrom): { text: string; values: unknown[] } {
  const text = `
WITH served AS (
  SELECT s.date, s.run_id, r.base_run_id, r.model_name, r.model_version
    FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id
   WHERE s.job = $1 AND s.date BETWEEN $2::date AND $3::date
),
outcomes AS MATERIALIZED (
${outcomeSelect(o)}
),
preds AS (
  SELECT v.date, v.model_name, v.model_version, p.key, p.score, p.label
    FROM served v CROSS JOIN LATERAL (
      ${runPredictionsOf('v.run_id', 'v.base_run_id', 'key, score, label')}) p
  UNION ALL
  SELECT v.date, m.model_name, m.model_version, c.key, c.score, c.label
    FROM served v
    JOIN prescore.run_models m ON m.run_id = v.run_id AND m.slot > 0
     AND (m.model_name, m.model_version) IS DISTINCT FROM (v.model_name, v.model_version)
    CROSS JOIN LATERAL (
      SELECT key, score, label FROM prescore.challenger_predictions c WHERE c.run_id = v.run_id AND c.slot = m.slot) c
),
matched AS MATERIALIZED (
  SELECT p.model_name, p.model_version, g.date, p.key, p.score, o.y,
         least(greatest(p.score, ${LOG_LOSS_EPS}::float8), 1 - ${LOG_LOSS_EPS}::float8) AS pc,
         least(greatest(p.score, 0::float8), 1::float8) AS p01,
         CASE WHEN p.label IN ('1', 'true') THEN 1.0::float8 WHEN p.label IN ('0', 'false') THEN 0.0::float8
              ELSE (p.score >= 0.5)::int::float8 END AS predicted
    FROM preds p JOIN outcomes o ON o.key = p.key AND o.date = p.date
    CROSS JOIN LATERAL (VALUES (p.date), (NULL::date)) AS g (date)
   WHERE p.score IS NOT NULL
),
stats AS (
  SELECT model_name, model_version, date, count(*) AS matched, sum(y) FILTER (WHERE y = 1) AS positives,
         count(*) FILTER (WHERE y NOT IN (0, 1)) AS non_binary,
         min(key) FILTER (WHERE y NOT IN (0, 1)) AS non_binary_example,
         avg(-(y * ln(pc) + (1 - y) * ln(1 - pc))) FILTER (WHERE y IN (0, 1)) AS log_loss,
         avg((predicted = y)::int::float8) AS accuracy,
         sqrt(avg((score - y) * (score - y))) AS rmse, avg(abs(score - y)) AS mae,
         avg(score) AS mean_score, avg(y) AS mean_outcome
    FROM matched GROUP BY 1, 2, 3
),
-- Mann-Whitney U over distinct scores: each positive counts the negatives scored below it, and
-- half of those tied with it (the rank-sum with tied ranks averaged); AUC = U / (n1 * n0).
by_score AS (
  SELECT model_name, model_version, date, score,
         count(*) FILTER (WHERE y = 1)::numeric AS pos, count(*) FILTER (WHERE y = 0)::numeric AS neg
    FROM matched GROUP BY 1, 2, 3, 4
),
auc AS (
  SELECT model_name, model_version, date,
         (sum(pos * (below + neg / 2)) / nullif(sum(pos) * sum(neg), 0))::float8 AS auc
    FROM (SELECT b.*, coalesce(sum(neg) OVER (PARTITION BY model_name, model_version, date ORDER BY score
                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below
            FROM by_score b) s
   GROUP BY 1, 2, 3
),
calibration AS (
  SELECT model_name, model_version, date,
         jsonb_agg(jsonb_build_object('bin', bin, 'count', n, 'meanPredicted', mp, 'observedRate', obs) ORDER BY bin) AS bins
    FROM (SELECT model_name, model_version, date, least(floor(p01 * ${CALIBRATION_BINS}), ${CALIBRATION_BINS - 1})::int AS bin,
                 count(*) AS n, avg(p01) AS mp, avg(y) AS obs
            FROM matched GROUP BY 1, 2, 3, 4) b
   GROUP BY 1, 2, 3
)
SELECT s.model_name, s.model_version, s.date::text, s.matched, coalesce(s.positives, 0)::float8 AS positives, s.non_binary,
       s.non_binary_example, s.log_loss, s.accuracy, s.rmse, s.mae, s.mean_score, s.mean_outcome, a.auc, c.bins
  FROM stats s
  LEFT JOIN auc a ON (a.model_name, a.model_version) = (s.model_name, s.model_version) AND a.date IS NOT DISTINCT FROM s.date
  LEFT JOIN calibration c ON (c.model_name, c.model_version) = (s.model_name, s.model_version) AND c.date IS NOT DISTINCT FROM s.date
 ORDER BY s.model_name, s.model_version, s.date NULLS LAST`;
  return { text, values: [job, from, to, o.timeZone] };
}

/** A (key, date) the outcomes hold twice in the range, which would count a prediction twice. */
export function duplicateOutcomeStatement(
  job: string,
  from: string,
  to: string,
  o: OutcomesFrom,
): { text: string; values: unknown[] } {
  return {
    text: `SELECT key, date::text FROM (${outcomeSelect(o)}) d WHERE $1::text IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 1`,
    values: [job, from, to, o.timeZone],
  };
}

/** The run serving each date of the range, with its model and the resolved job it ran. */
export async function servedRunsBetween(
  db: Queryable,
  job: string,
  from: string,
  to: string,
): Promise<{ date: string; runId: string; modelName: string; modelVersion: number; spec: unknown }[]> {
  const { rows } = await db.query<{ date: string; run_id: string; model_name: string; model_version: number; spec: unknown }>(
    `SELECT s.date::text, s.run_id::text, r.model_name, r.model_version, r.spec
       FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id
      WHERE s.job = $1 AND s.date BETWEEN $2::date AND $3::date ORDER BY s.date`,
    [job, from, to],
  );
  return rows.map((r) => ({
    date: r.date,
    runId: r.run_id,
    modelName: r.model_name,
    modelVersion: r.model_version,
    spec: r.spec,
  }));
}
