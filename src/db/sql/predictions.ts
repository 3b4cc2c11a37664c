import { runPredictions, type RunRef } from './layers.js';

/**
 * `prescore.predictions`, list-partitioned by run: reads by the API. (Writes go through the
 * run's own table, see partitions.ts, and sink/writer.ts.)
 *
 * The run's id is a parameter and the planner prunes to its one partition, whose unique index
 * on key (COLLATE "C", as the column) answers `= ANY` with one descent per key. Named, so each
 * connection parses it once. Rows come as arrays: [key, score, label, outputs].
 */
export const LOOKUP = {
  name: 'prescore_api_lookup',
  text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key = ANY ($2::text[])',
  rowMode: 'array',
} as const;

export type LookupRow = [key: string, score: number | null, label: string | null, outputs: number[] | null];

/**
 * A run's predictions in key order, for `prescore export` and bundles: key, score, label,
 * outputs. A layer's rows are read through to its base (layers.ts): the union is sorted as one,
 * so the file is the same as that of a run holding all its rows. COPY takes no parameters, so
 * the run ids go in as checked integer literals.
 */
export function exportQuery(run: RunRef, format: 'csv' | 'rows'): string {
  const outputs = format === 'csv' ? 'array_to_json(outputs)::text AS outputs' : 'outputs';
  return `SELECT key, score, label, ${outputs} FROM (${runPredictions(run)}) p ORDER BY key`;
}

/**
 * One page of a run's predictions in key order, after `$2` (the last key of the page before),
 * for the API's in-memory copy of a run. Keyset pages on the partition's key index: each page
 * is a short query, so a load holds no lock for long (retention can always drop the run) and
 * shares the pool with lookups. Same columns and types as LOOKUP, so values parse the same.
 */
export const PAGE_FIRST = {
  name: 'prescore_api_page_first',
  text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint ORDER BY key LIMIT $2',
  rowMode: 'array',
} as const;

export const PAGE_AFTER = {
  name: 'prescore_api_page_after',
  text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key > $3 ORDER BY key LIMIT $2',
  rowMode: 'array',
} as const;
