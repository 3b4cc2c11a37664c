import type { JobSpec } from './schema.js';

const TIMESTAMP_TYPES = new Set(['timestamp', 'timestamptz']);

/**
 * What `incremental` needs of the source (see runs/incremental.ts): a table or view (the changed
 * set, the row hashes and the carry-over are statements that write, and a job's query is only
 * ever run read-only), and for `changedSince` a timestamp column of it.
 */
export function incrementalProblems(
  spec: JobSpec,
  columns: ReadonlyMap<string, { typname: string; formatted: string }>,
): string[] {
  const inc = spec.incremental;
  if (!inc) return [];
  const problems: string[] = [];
  if (spec.source.table === undefined) {
    problems.push(
      'incremental: needs source.table (a table or view): the changed rows and the carry-over are computed by statements that write, and a source query is only run read-only; put the query in a view and name it in source.table, or remove incremental',
    );
  }
  if ('changedSince' in inc) {
    const col = columns.get(inc.changedSince);
    if (!col) {
      problems.push(
        `incremental.changedSince: column "${inc.changedSince}" does not exist in ${spec.source.table ?? 'the source query'} (columns: ${[...columns.keys()].join(', ')})`,
      );
    } else if (!TIMESTAMP_TYPES.has(col.typname)) {
      problems.push(
        `incremental.changedSince: column "${inc.changedSince}" is ${col.formatted}; it must be timestamp or timestamptz, set when a row's features change (or use {"mode": "hash"})`,
      );
    }
  }
  return problems;
}
