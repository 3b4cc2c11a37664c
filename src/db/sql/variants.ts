/**
 * Reads of A/B serving (src/api/variants.ts): a challenger's stored predictions and rejects
 * of one run, by key. The run's id is a parameter, so the planner prunes to the run's
 * challenger partition, whose unique index on (key, slot) answers `key = ANY` with one
 * descent per key. Named, so each connection parses them once. Rows come as arrays.
 */
export const CHALLENGER_LOOKUP = {
  name: 'prescore_api_challenger_lookup',
  text:
    'SELECT key, score, label, outputs FROM prescore.challenger_predictions ' +
    'WHERE run_id = $1::bigint AND slot = $2::smallint AND key = ANY ($3::text[])',
  rowMode: 'array',
} as const;

/** Why a challenger did not score keys of a run: one reason per key (index on run_id, slot, key). */
export const CHALLENGER_REJECTS = {
  name: 'prescore_api_challenger_rejects',
  text:
    'SELECT DISTINCT ON (key) key, reason FROM prescore.challenger_rejects ' +
    'WHERE run_id = $1::bigint AND slot = $2::smallint AND key = ANY ($3::text[]) ORDER BY key, reason',
  rowMode: 'array',
} as const;

/**
 * The bucket of (job, key) in SQL, as src/serving/split.ts bucketOf computes it: the first 4
 * bytes of sha256(job || '\n' || key) as an unsigned big-endian integer, mod 100. `$job` and
 * `$key` stand for text expressions; the README shows it with a table's columns.
 */
export function bucketSql(job: string, key: string): string {
  return `(('x' || left(encode(sha256(convert_to(${job} || E'\\n' || ${key}, 'UTF8')), 'hex'), 8))::bit(32)::bigint % 100)`;
}
