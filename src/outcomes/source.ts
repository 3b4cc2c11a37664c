import type { Pool } from '../db/pool.js';
import { parseQualifiedName, quoteIdent, type QualifiedName } from '../db/ident.js';
import { InputError } from '../errors.js';
import { PG } from '../db/codes.js';
import { fromClause, sourceQueryProblem } from '../source/statement.js';
import { describeFrom, KEY_TYPES, relationOid, type Column } from '../definitions/check.js';
import type { JobSpec } from '../definitions/schema.js';

/**
 * A job's `outcomes` source: a table or a query with the key, the date and the observed outcome.
 * It is read as the feature source is: a table name is parsed, checked against the catalog and
 * quoted; a query is embedded as one statement over the extended protocol (PostgreSQL refuses a
 * second one there) and always runs in a read-only transaction.
 */
export type OutcomesSpec = NonNullable<JobSpec['outcomes']>;

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8']);
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar']);
const DATE_TYPES = new Set(['date', 'timestamp', 'timestamptz']);
const OUTCOME_TYPES = new Set(['int2', 'int4', 'int8', 'float4', 'float8', 'numeric', 'bool']);

export interface OutcomesColumns {
  /** The FROM item: the quoted table, or the query in parentheses. */
  from: string;
  key: string;
  date: { name: string; typname: string };
  outcome: { name: string; typname: string };
}

function queryProblem(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e.code === PG.readOnlyTransaction) return `outcomes.query must only read (it runs read-only): ${e.message}`;
  return sourceQueryProblem(err, 'outcomes.query');
}

/**
 * Checks the job's outcomes source against the catalog: every problem, each naming the field
 * and the fix. `sourceKeyType` (the feature source key's type, when known) must be matched:
 * keys are joined on their text form.
 */
export async function checkOutcomes(
  pool: Pool,
  spec: JobSpec,
  sourceKeyType?: string,
): Promise<{ problems: string[]; columns?: OutcomesColumns }> {
  const o = spec.outcomes;
  if (!o) return { problems: [] };
  let table: QualifiedName | null = null;
  if (o.table !== undefined) {
    try {
      table = parseQualifiedName(o.table, 'outcomes.table');
    } catch (err) {
      return { problems: [(err as Error).message] };
    }
    if ((await relationOid(pool, table)) === null) {
      return { problems: [`outcomes.table: table ${o.table} does not exist (looked for ${table.schema}.${table.name})`] };
    }
  }
  const from = fromClause({ query: o.query ?? null, table });
  const where = o.table ?? 'the outcomes query';
  let columns: Map<string, Column>;
  try {
    columns = await describeFrom(pool, from);
  } catch (err) {
    return { problems: [o.query !== undefined ? queryProblem(err) : `outcomes.table: ${(err as Error).message}`] };
  }
  const problems: string[] = [];
  const list = [...columns.keys()].join(', ');
  const missing = (field: string, col: string, holds: string) =>
    `outcomes.${field}: column "${col}" does not exist in ${where} (columns: ${list}); name the column that holds ${holds}`;
  const key = columns.get(o.key);
  if (!key) problems.push(missing('key', o.key, `the job's key (source.key "${spec.source.key}")`));
  else if (!KEY_TYPES.has(key.typname)) {
    problems.push(
      `outcomes.key: column "${o.key}" is ${key.formatted}; keys must be an integer, text, uuid, numeric or date column`,
    );
  } else if (sourceKeyType !== undefined && !sameKeyFamily(key.typname, sourceKeyType)) {
    problems.push(
      `outcomes.key: column "${o.key}" is ${key.formatted} but source.key "${spec.source.key}" is ${sourceKeyType}: keys are matched ` +
        `by their text, so give both the same type (cast it in outcomes.query, e.g. SELECT ${o.key}::${sourceKeyType} AS ${o.key}, ...)`,
    );
  }
  const date = columns.get(o.date);
  if (!date) problems.push(missing('date', o.date, 'the date the outcome belongs to (the prediction date it is matched with)'));
  else if (!DATE_TYPES.has(date.typname)) {
    problems.push(`outcomes.date: column "${o.date}" is ${date.formatted}; it must be date, timestamp or timestamptz`);
  }
  const outcome = columns.get(o.outcome);
  if (!outcome) problems.push(missing('outcome', o.outcome, 'the observed outcome (0/1 or boolean, or the true value)'));
  else if (!OUTCOME_TYPES.has(outcome.typname)) {
    problems.push(
      `outcomes.outcome: column "${o.outcome}" is ${outcome.formatted}, not numeric or boolean: make it a number in outcomes.query, ` +
        `e.g. SELECT ..., (${quoteIdent(o.outcome)} = 'churned')::int AS ${o.outcome}`,
    );
  }
  if (problems.length > 0 || !key || !date || !outcome) return { problems };
  return {
    problems,
    columns: {
      from,
      key: o.key,
      date: { name: o.date, typname: date.typname },
      outcome: { name: o.outcome, typname: outcome.typname },
    },
  };
}

/** Integer types share their text form; other types must be the same. */
function sameKeyFamily(typname: string, sourceType: string): boolean {
  const base = sourceType.replace(/\(.*\)$/, '').trim();
  const source = PG_TYPE_NAMES[base] ?? base;
  if (INTEGER_TYPES.has(typname) && INTEGER_TYPES.has(source)) return true;
  if (TEXT_TYPES.has(typname) && TEXT_TYPES.has(source)) return true;
  return typname === source;
}

/** format_type names (what a resolved job records) to pg_type names. */
const PG_TYPE_NAMES: Record<string, string> = {
  smallint: 'int2',
  integer: 'int4',
  bigint: 'int8',
  text: 'text',
  'character varying': 'varchar',
  character: 'bpchar',
  uuid: 'uuid',
  numeric: 'numeric',
  date: 'date',
};

/** The checked outcomes source, or an error listing its problems. */
export async function outcomesColumns(pool: Pool, job: string, spec: JobSpec): Promise<OutcomesColumns> {
  if (!spec.outcomes) {
    throw new InputError(
      `job ${job} has no outcomes: add "outcomes": {"table": "...", "key": "...", "date": "...", "outcome": "..."} to its job file`,
    );
  }
  const { problems, columns } = await checkOutcomes(pool, spec);
  if (!columns) throw new InputError(`job ${job}: ${problems.join('; ')}`);
  return columns;
}
