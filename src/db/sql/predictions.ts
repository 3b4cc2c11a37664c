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
 * A run's predictions in key order, for `prescore export`: key, score, label, outputs. COPY
 * takes no parameters, so the run id goes in as a checked integer literal.
 */
export function exportQuery(runId: string, format: 'csv' | 'rows'): string {
  if (!/^[1-9][0-9]{0,18}$/.test(runId)) throw new Error(`not a run id: ${runId}`);
  const outputs = format === 'csv' ? 'array_to_json(outputs)::text AS outputs' : 'outputs';
  return `SELECT key, score, label, ${outputs} FROM prescore.predictions WHERE run_id = ${runId} ORDER BY key`;
}
