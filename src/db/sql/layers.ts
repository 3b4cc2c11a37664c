import type { Queryable } from '../pool.js';

/**
 * Layered runs (migration 012). An incremental run of a job without challengers stores in its
 * own table only its LAYER: the rows it scored, and those an earlier layer on the same base
 * scored and it carried. Every other key it reads through to its BASE, a run that holds all its
 * rows (runs.base_run_id), except the keys in its MASK (prescore.layer_masks): the base's keys
 * it rescored, rejected, or found gone from the source. So a run's predictions are
 *
 *   layer  UNION ALL  (base - mask)
 *
 * and the two never share a key. A layer's base is never a layer itself: one level at most.
 * Rejects are never read through: a layer's rejects table holds all its rejects, carried ones
 * too. Every reader of a run's predictions goes through this file (or runs the same union).
 */

/** A run as readers need it: its id, and for a layer the run it reads through to. */
export interface RunRef {
  runId: string;
  baseRunId: string | null;
}

/** A run id as an SQL literal, checked (COPY and DDL take no parameters). */
export function runLiteral(id: string): string {
  if (!/^[1-9][0-9]{0,18}$/.test(id)) throw new Error(`not a run id: ${id}`);
  return id;
}

/**
 * The run's predictions as a query of `cols` (column names of prescore.predictions, written
 * bare: `key, score`), with `filter` (a condition on the bare column names, e.g. `key > 'x'`)
 * applied to both sides. Ids are pasted as checked literals, so the planner prunes each side to
 * its one partition.
 */
export function runPredictions(run: RunRef, cols = 'key, score, label, outputs', filter?: string): string {
  const and = filter ? ` AND ${filter}` : '';
  const own = `SELECT ${cols} FROM prescore.predictions WHERE run_id = ${runLiteral(run.runId)}${and}`;
  if (!run.baseRunId) return own;
  return `${own}
     UNION ALL
     SELECT ${cols} FROM prescore.predictions WHERE run_id = ${runLiteral(run.baseRunId)}${and}
        AND NOT EXISTS (SELECT 1 FROM prescore.layer_masks m
                         WHERE m.run_id = ${runLiteral(run.runId)} AND m.key = prescore.predictions.key)`;
}

/**
 * runPredictions' twin inside a larger statement, for each row of an outer query: `run` and
 * `base` are SQL expressions of the outer row (e.g. `v.run_id`, `v.base_run_id`; a NULL base
 * reads nothing through). Columns are those of prescore.predictions, qualified by the alias
 * `p` in `filter`. The planner prunes each side to its partition at run time.
 */
export function runPredictionsOf(run: string, base: string, cols = 'key, score, label, outputs', filter?: string): string {
  const and = filter ? ` AND ${filter}` : '';
  const q = cols
    .split(',')
    .map((c) => `p.${c.trim()}`)
    .join(', ');
  return `SELECT ${q} FROM prescore.predictions p WHERE p.run_id = ${run}${and}
     UNION ALL
     SELECT ${q} FROM prescore.predictions p WHERE p.run_id = ${base}${and}
        AND NOT EXISTS (SELECT 1 FROM prescore.layer_masks m WHERE m.run_id = ${run} AND m.key = p.key)`;
}

/** The run's predicted and rejected keys (text, COLLATE "C"): what a next incremental run compares with. */
export function runKeys(run: RunRef): string {
  return `${runPredictions(run, 'key')}
     UNION ALL SELECT key COLLATE "C" FROM prescore.rejects WHERE run_id = ${runLiteral(run.runId)} AND key IS NOT NULL`;
}

/**
 * The API's lookup of a layer (the twin of predictions.ts LOOKUP): $1 the run, $2 the keys,
 * $3 its base. Both sides descend their partition's key index once per key.
 */
export const LAYER_LOOKUP = {
  name: 'prescore_api_layer_lookup',
  text: `SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key = ANY ($2::text[])
         UNION ALL
         SELECT b.key, b.score, b.label, b.outputs FROM prescore.predictions b
          WHERE b.run_id = $3::bigint AND b.key = ANY ($2::text[])
            AND NOT EXISTS (SELECT 1 FROM prescore.layer_masks m WHERE m.run_id = $1::bigint AND m.key = b.key)`,
  rowMode: 'array',
} as const;

/**
 * A page of a layer's predictions in key order (PAGE_FIRST/PAGE_AFTER's twins): $1 the run, $2
 * the page size, $3 its base, and for LAYER_PAGE_AFTER $4 the last key of the page before. Each
 * side reads at most a page off its key index and the two merge in key order (measured on a
 * 2M-row root with 60k masked keys: 7 ms a page of 5,000, where one ORDER BY over the union
 * sorted everything after the cursor). The mask is probed per row (OFFSET 0 keeps the probe
 * a per-row index lookup; as an anti-join the planner sorts the whole mask for each page).
 */
function layerPage(after: boolean) {
  const bound = (k: string) => (after ? ` AND ${k} > $4` : '');
  return `SELECT key, score, label, outputs FROM (
      (SELECT key, score, label, outputs FROM prescore.predictions
        WHERE run_id = $1::bigint${bound('key')} ORDER BY key LIMIT $2)
      UNION ALL
      (SELECT b.key, b.score, b.label, b.outputs FROM prescore.predictions b
        WHERE b.run_id = $3::bigint${bound('b.key')}
          AND NOT EXISTS (SELECT 1 FROM prescore.layer_masks m WHERE m.run_id = $1::bigint AND m.key = b.key OFFSET 0)
        ORDER BY b.key LIMIT $2)) u
    ORDER BY key LIMIT $2`;
}

export const LAYER_PAGE_FIRST = { name: 'prescore_api_layer_page_first', text: layerPage(false), rowMode: 'array' } as const;

export const LAYER_PAGE_AFTER = { name: 'prescore_api_layer_page_after', text: layerPage(true), rowMode: 'array' } as const;

/** How many predictions the run has, read through included (its tables' indexes answer). */
export async function countRunPredictions(db: Queryable, run: RunRef): Promise<number> {
  const count = (from: string, runId: string) => `(SELECT count(*) FROM ${from} WHERE run_id = ${runLiteral(runId)})`;
  const through = run.baseRunId
    ? ` + ${count('prescore.predictions', run.baseRunId)} - ${count('prescore.layer_masks', run.runId)}`
    : '';
  const { rows } = await db.query<{ n: string }>(`SELECT ${count('prescore.predictions', run.runId)}${through} AS n`);
  return Number(rows[0]!.n);
}

/** The run as readers need it (RunRef), from its row. */
export async function runRef(db: Queryable, runId: string): Promise<RunRef> {
  const { rows } = await db.query<{ base: string | null }>(
    'SELECT base_run_id::text AS base FROM prescore.runs WHERE id = $1::bigint',
    [runId],
  );
  return { runId, baseRunId: rows[0]?.base ?? null };
}

/** A layer's mask, when retention drops it. */
export async function deleteMasks(db: Queryable, runId: string): Promise<void> {
  await db.query('DELETE FROM prescore.layer_masks WHERE run_id = $1::bigint', [runId]);
}
