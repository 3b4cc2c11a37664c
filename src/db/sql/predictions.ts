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
