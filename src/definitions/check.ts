import { ValidationError } from '../errors.js';
import { withReadOnly, type Pool } from '../db/pool.js';
import { parseQualifiedName, quoteIdent, type QualifiedName } from '../db/ident.js';
import { fromClause, sourceQueryProblem, sourceStatement } from '../source/statement.js';
import { namedProfile, runProfile } from '../db/sql/profiles.js';
import type { ColumnProfile } from '../profile/profile.js';
import { resolveOutputMapping, type OutputMapping } from '../models/output.js';
import { resolveModel, type PinnedModel } from '../models/registry.js';
import { NUMERIC_INPUT_TYPES, type InputType } from '../models/signature.js';
import { incrementalProblems } from './incremental.js';
import { carrierFor, columnKind, needsFeeds, planFeeds, sameInputs, type Feed, type FeedType } from '../models/inputs.js';
import type { JobFile } from './load.js';
import type { JobSpec } from './schema.js';

/** How a feature column travels through binary COPY: the SQL cast and its wire width. */
export type WireType = 'float4' | 'float8' | 'int8' | 'bool' | 'text';

export interface ResolvedFeature {
  name: string;
  pgType: string;
  wire: WireType;
  /** The input dtypes its values must fit (feeds only, see models/inputs.ts). */
  targets?: FeedType[];
}

/**
 * A job checked against the live catalog and its pinned model: everything a worker needs to
 * read, score and write a chunk. Plain JSON, stored with the run so every worker of a run
 * uses the same plan even if the job file changes meanwhile.
 */
export interface ResolvedJob {
  name: string;
  file: string;
  spec: JobSpec;
  /** The source: a table, or (when null) the job's SQL query. */
  table: QualifiedName | null;
  query: string | null;
  key: { name: string; pgType: string };
  partition: { name: string; kind: 'date' | 'timestamp' | 'timestamptz' };
  features: ResolvedFeature[];
  model: PinnedModel;
  input: { name: string; type: InputType; batch: number | null };
  mapping: OutputMapping;
  /**
   * Set in the spec of an incremental run (runs/incremental.ts): its chunks read only the keys
   * of its changed set; `nullKeys`: the source has rows with a NULL key, read by every run.
   */
  changedKeys?: { nullKeys: boolean };
  /**
   * Set when the model is not fed one plain [batch, features] tensor (several inputs, other
   * dtypes, text): each input and its columns. `input.type` is then the matrix dtype.
   */
  feeds?: Feed[];
  /** The job's challengers, pinned at plan (absent in runs planned before challengers existed). */
  challengers?: ResolvedChallenger[];
}

/** A challenger: slot 1..3 of prescore.run_models, scored on the champion's feature batches. */
export interface ResolvedChallenger {
  slot: number;
  /** As the job file names it: "churn@challenger". */
  ref: string;
  model: PinnedModel;
  input: { name: string; type: InputType; batch: number | null };
  mapping: OutputMapping;
}

const NUMERIC_TYPES = new Set(['int2', 'int4', 'int8', 'float4', 'float8', 'numeric']);
const PARTITION_TYPES: Record<string, ResolvedJob['partition']['kind']> = {
  date: 'date',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
};
/** Key column types prescore reads (and serves as their text form). */
export const KEY_TYPES = new Set(['int2', 'int4', 'int8', 'text', 'varchar', 'bpchar', 'uuid', 'numeric', 'date']);

function wireFor(pgType: string, input: InputType): WireType {
  if (input === 'float64') return 'float8';
  if (input === 'int64') return ['int2', 'int4', 'int8'].includes(pgType) ? 'int8' : 'float8';
  // float32: PostgreSQL refuses float8/numeric -> float4 casts that overflow, so those travel as float8.
  return ['float8', 'numeric'].includes(pgType) ? 'float8' : 'float4';
}

export interface Column {
  name: string;
  typname: string;
  formatted: string;
  /** False for a query's output column that no table column feeds straight (an expression). */
  fromTable?: boolean;
}

/** The oid of a table, view, materialized view or foreign table, or null when there is none. */
export async function relationOid(pool: Pool, table: QualifiedName): Promise<string | null> {
  const rel = await pool.query<{ oid: string }>(
    `SELECT c.oid::text AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
    [table.schema, table.name],
  );
  return rel.rows[0]?.oid ?? null;
}

async function readColumns(pool: Pool, table: QualifiedName): Promise<Map<string, Column> | null> {
  const oid = await relationOid(pool, table);
  if (oid === null) return null;
  const { rows } = await pool.query<{ name: string; typname: string; formatted: string }>(
    `SELECT a.attname AS name, t.typname, format_type(a.atttypid, a.atttypmod) AS formatted
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`,
    [oid],
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/**
 * The output columns of a job's source query, from PostgreSQL itself (the query runs with
 * LIMIT 0 in a read-only transaction). Throws PostgreSQL's own complaint if it refuses it.
 */
function describeQuery(pool: Pool, query: string): Promise<Map<string, Column>> {
  return describeFrom(pool, fromClause({ query, table: null }));
}

/** The output columns of `SELECT * FROM <from>` (a quoted table or a query in parentheses), as describeQuery reads them. */
export async function describeFrom(pool: Pool, from: string): Promise<Map<string, Column>> {
  return withReadOnly(pool, async (client) => {
    const res = await client.query(sourceStatement(`SELECT * FROM ${from} LIMIT 0`));
    const { rows } = await client.query<{ i: number; typname: string; formatted: string }>(
      `SELECT f.i, t.typname, format_type(f.oid, nullif(f.mod, -1)) AS formatted
         FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS f(oid, mod, i) JOIN pg_type t ON t.oid = f.oid`,
      [res.fields.map((f) => f.dataTypeID), res.fields.map((f) => f.dataTypeModifier)],
    );
    const byIndex = new Map(rows.map((r) => [Number(r.i), r]));
    return new Map(
      res.fields.map((f, i) => {
        const t = byIndex.get(i + 1)!;
        return [f.name, { name: f.name, typname: t.typname, formatted: t.formatted, fromTable: f.tableID !== 0 }];
      }),
    );
  });
}

/** True when a unique index makes the key unique per date (on (key) or (key, partition)). */
async function hasUniqueKey(pool: Pool, table: QualifiedName, key: string, partition: string): Promise<boolean> {
  const { rows } = await pool.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text) AS cols
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
      WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL
      GROUP BY i.indexrelid`,
    [table.schema, table.name],
  );
  return rows.some((r) => r.cols.includes(key) && r.cols.every((c) => c === key || c === partition));
}

/**
 * Checks a job against the catalog and its model. Every problem is collected and thrown at
 * once as a ValidationError naming the job file, the field and the fix.
 * `checkData` also scans the table for keys that repeat within a date when no unique index
 * guarantees it (costly on big tables: `jobs validate` does it, `run` relies on the unique
 * index it builds before publishing).
 */
export async function resolveJob(pool: Pool, job: JobFile, options: { checkData?: boolean } = {}): Promise<ResolvedJob> {
  const { spec } = job;
  const problems: string[] = [];
  let model: PinnedModel | undefined;
  try {
    model = await resolveModel(pool, spec.model);
  } catch (err) {
    problems.push(`model: ${(err as Error).message}`);
  }

  let input: ResolvedJob['input'] | undefined;
  let mapping: OutputMapping = {};
  if (model) {
    const fit = fitModel(model, spec, 'model');
    problems.push(...fit.problems);
    input = fit.input;
    mapping = fit.mapping;
  }
  const challengers = await resolveChallengers(pool, spec, model, input, problems);

  let table: QualifiedName | undefined;
  let columns: Map<string, Column> | null = null;
  const query = spec.source.query ?? null;
  const sourceName = spec.source.table ?? 'the source query';
  if (spec.source.table !== undefined) {
    try {
      table = parseQualifiedName(spec.source.table, 'source.table');
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (table) {
      columns = await readColumns(pool, table);
      if (!columns)
        problems.push(`source.table: table ${spec.source.table} does not exist (looked for ${table.schema}.${table.name})`);
    }
  } else if (query !== null) {
    try {
      columns = await describeQuery(pool, query);
    } catch (err) {
      problems.push(sourceQueryProblem(err));
    }
  }

  const features: ResolvedFeature[] = [];
  let keyCol: Column | undefined;
  let partKind: ResolvedJob['partition']['kind'] | undefined;
  if (columns) {
    const missing = (field: string, col: string) =>
      `${field}: column "${col}" does not exist in ${sourceName} (columns: ${[...columns!.keys()].join(', ')})`;
    keyCol = columns.get(spec.source.key);
    if (!keyCol) problems.push(missing('source.key', spec.source.key));
    else if (!KEY_TYPES.has(keyCol.typname)) {
      problems.push(
        `source.key: column "${keyCol.name}" is ${keyCol.formatted}; keys must be an integer, text, uuid, numeric or date column`,
      );
    }
    const part = columns.get(spec.source.partition);
    if (!part) problems.push(missing('source.partition', spec.source.partition));
    else {
      partKind = PARTITION_TYPES[part.typname];
      if (!partKind)
        problems.push(`source.partition: column "${part.name}" is ${part.formatted}; it must be date, timestamp or timestamptz`);
    }
    spec.source.features.forEach((name, i) => {
      const col = columns!.get(name);
      const kind = col ? columnKind(col.typname) : null;
      if (!col) problems.push(missing(`source.features[${i}]`, name));
      else if (kind === 'bool' || kind === 'text') {
        features.push({ name, pgType: col.typname, wire: kind });
      } else if (!NUMERIC_TYPES.has(col.typname)) {
        problems.push(
          `source.features[${i}]: column "${name}" is ${col.formatted}, not numeric (smallint, integer, bigint, real, double precision, numeric), boolean or text`,
        );
      } else {
        features.push({ name, pgType: col.typname, wire: wireFor(col.typname, input?.type ?? 'float32') });
      }
    });
    const needsScan =
      options.checkData &&
      keyCol &&
      part &&
      (table ? !(await hasUniqueKey(pool, table, keyCol.name, part.name)) : query !== null);
    if (needsScan && keyCol && part) {
      const from = fromClause({ query, table: table ?? null });
      const dup = await withReadOnly(pool, (client) =>
        client.query<{ d: string; k: string }>(
          sourceStatement(
            `SELECT ${quoteIdent(part.name)}::text AS d, ${quoteIdent(keyCol!.name)}::text AS k FROM ${from}
              GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 1`,
          ),
        ),
      );
      if (dup.rows[0]) {
        problems.push(
          `source.key: key ${dup.rows[0].k} appears more than once on ${dup.rows[0].d}: the key must be unique per date (add a unique index on (${keyCol.name}, ${part.name}))`,
        );
      }
    }
  }

  if (columns && query !== null) problems.push(...missPathProblems(spec, columns));
  if (columns) problems.push(...incrementalProblems(spec, columns));
  const feeds = model && input && columns ? fitFeeds(model, spec, columns, features, input, problems) : undefined;
  problems.push(...(await baselineProblems(pool, spec)));

  if (problems.length > 0 || !model || !input || (!table && query === null) || !keyCol || !partKind) {
    throw new ValidationError(`job ${spec.name} (${job.file})`, problems);
  }
  return {
    name: spec.name,
    file: job.file,
    spec,
    table: table ?? null,
    query,
    key: { name: keyCol.name, pgType: keyCol.formatted },
    partition: { name: spec.source.partition, kind: partKind },
    features,
    model,
    input,
    mapping,
    ...(feeds ? { feeds } : {}),
    challengers,
  };
}

/**
 * The model's inputs fed from the job's features (models/inputs.ts): sets each feature's wire and
 * targets, and the shared batch dimension; undefined on the plain path, where a text column
 * cannot go.
 */
function fitFeeds(
  model: PinnedModel,
  spec: JobSpec,
  columns: Map<string, Column>,
  features: ResolvedFeature[],
  input: ResolvedJob['input'],
  problems: string[],
): Feed[] | undefined {
  const where = `model ${model.name} v${model.version}`;
  if (!needsFeeds(model.signature, spec.inputs)) {
    features.forEach((f, i) => {
      if (f.wire === 'text') {
        problems.push(
          `source.features[${i}]: column "${f.name}" is ${columns.get(f.name)!.formatted} but ${where} input "${input.name}" takes ${input.type}: a text column feeds only a string input (an in-graph ai.onnx.ml OneHotEncoder or LabelEncoder)`,
        );
      }
    });
    return undefined;
  }
  if (features.length !== spec.source.features.length) return undefined; // a missing column is already said
  const plan = planFeeds(
    model.signature,
    where,
    spec.inputs,
    features.map((f) => ({ name: f.name, kind: columnKind(f.pgType)!, formatted: columns.get(f.name)!.formatted })),
  );
  problems.push(...plan.problems);
  if ((spec.serving?.onMiss ?? 'off') !== 'off') {
    problems.push(
      `serving.onMiss: "${spec.serving!.onMiss}" scores a missing key as one plain [batch, features] tensor, which ${where} (inputs, text, int32/bool/float16) does not take: set it to "off"`,
    );
  }
  features.forEach((f, i) => {
    if (plan.targets[i]!.length > 0) f.targets = [...new Set(plan.targets[i])];
  });
  input.batch = plan.batch;
  return plan.feeds;
}

/**
 * How one model fits the job: its single [batch, features] input against the job's features,
 * and the job's output mapping against its outputs. `field` names the job field that chose it
 * (`model`, `challengers[1]`) in every problem.
 */
function fitModel(
  model: PinnedModel,
  spec: JobSpec,
  field: string,
): { input?: ResolvedJob['input']; mapping: OutputMapping; problems: string[] } {
  const problems: string[] = [];
  let input: ResolvedJob['input'] | undefined;
  const sig = model.signature;
  const where = `model ${model.name} v${model.version}`;
  if (needsFeeds(sig, spec.inputs)) {
    // Checked against the columns in fitFeeds, once their types are known.
    input = { name: sig.inputs[0]?.name ?? '', type: carrierFor(sig), batch: sig.inputs[0]?.shape[0] ?? null };
  } else if (sig.inputs.length !== 1) {
    problems.push(
      `${field}: ${where} has ${sig.inputs.length} inputs (${sig.inputs.map((i) => i.name).join(', ')}); prescore feeds one [batch, features] tensor: export the model with a single input`,
    );
  } else {
    const inp = sig.inputs[0]!;
    if (!(NUMERIC_INPUT_TYPES as readonly string[]).includes(inp.type)) {
      problems.push(`${field}: ${where} input "${inp.name}" is ${inp.type}; prescore feeds float32, float64 or int64`);
    } else if (inp.shape.length !== 2) {
      problems.push(
        `${field}: ${where} input "${inp.name}" has shape [${inp.shape.map((d) => d ?? '?').join(', ')}]; prescore feeds [batch, features]`,
      );
    } else {
      const width = inp.shape[1];
      if (width !== null && width !== spec.source.features.length) {
        problems.push(
          field === 'model'
            ? `source.features: lists ${spec.source.features.length} columns but ${where} takes ${width} features per row: list exactly the model's inputs, in its order`
            : `${field}: ${where} takes ${width} features per row but source.features lists ${spec.source.features.length}: a challenger is fed the champion's features, so it must take the same ${spec.source.features.length}, in the same order`,
        );
      }
      input = { name: inp.name, type: inp.type as InputType, batch: inp.shape[0] ?? null };
    }
  }
  const resolved = resolveOutputMapping(spec.output, sig);
  problems.push(
    ...(field === 'model'
      ? resolved.problems
      : resolved.problems.map(
          (p) =>
            `${field}: ${where}: ${p} (a challenger's outputs are stored with the job's output mapping, like the champion's)`,
        )),
  );
  return { input, mapping: resolved.mapping, problems };
}

/**
 * The job's challengers, pinned like the champion: each must resolve, differ from the champion
 * and from the others (also after resolving: "churn@challenger" may be "churn@7"), take the
 * champion's features in the champion's input dtype (the chunk reads and decodes its rows once,
 * for every model) and fit the job's output mapping.
 */
async function resolveChallengers(
  pool: Pool,
  spec: JobSpec,
  champion: PinnedModel | undefined,
  championInput: ResolvedJob['input'] | undefined,
  problems: string[],
): Promise<ResolvedChallenger[]> {
  const out: ResolvedChallenger[] = [];
  const seen = new Map<string, string>();
  if (champion) seen.set(`${champion.name}@${champion.version}`, 'model');
  for (const [i, ref] of (spec.challengers ?? []).entries()) {
    const field = `challengers[${i}]`;
    let model: PinnedModel;
    try {
      model = await resolveModel(pool, ref);
    } catch (err) {
      problems.push(`${field}: ${(err as Error).message}`);
      continue;
    }
    const id = `${model.name}@${model.version}`;
    const same = seen.get(id);
    if (same !== undefined) {
      problems.push(
        `${field}: "${ref}" is ${model.name} v${model.version}, the same model as ${same === 'model' ? `the champion (model "${spec.model}")` : same}: a challenger must be another model or version; remove it`,
      );
      continue;
    }
    seen.set(id, field);
    const fit = fitModel(model, spec, field);
    problems.push(...fit.problems);
    if (fit.input && championInput && fit.input.type !== championInput.type) {
      problems.push(
        `${field}: model ${model.name} v${model.version} takes ${fit.input.type} input but the champion takes ${championInput.type}: the chunk decodes its rows once, in the champion's dtype; export the challenger with a ${championInput.type} input (or score it as the champion of a job of its own)`,
      );
      continue;
    }
    const fed = champion && (needsFeeds(champion.signature, spec.inputs) || needsFeeds(model.signature, spec.inputs));
    if (champion && fed && !sameInputs(champion.signature, model.signature)) {
      problems.push(
        `${field}: model ${model.name} v${model.version} has inputs ${model.signature.inputs.map((x) => `${x.name}:${x.type}`).join(', ')} but the champion has ${champion.signature.inputs.map((x) => `${x.name}:${x.type}`).join(', ')}: a challenger of a job with inputs is fed the champion's inputs, so it must take the same names, dtypes and shapes`,
      );
      continue;
    }
    if (fit.input && fit.problems.length === 0) {
      out.push({ slot: i + 1, ref, model, input: fit.input, mapping: fit.mapping });
    }
  }
  return out;
}

/**
 * `serving.onMiss: "compute"` (in the API) and `"enqueue"` (in a queue worker) read one key of one
 * date of the source per miss, as
 * `SELECT ... FROM (<query>) s WHERE s.<key> = ANY(...) AND <date filter>`. PostgreSQL pushes
 * those filters down to a table only when the query's key and partition columns ARE table
 * columns; a computed one (`id::text AS id`, `row_number() OVER () AS id`) leaves no path but
 * evaluating the whole query for every miss, so it is refused. (A table or view source always
 * has the path.)
 */
function missPathProblems(spec: JobFile['spec'], columns: Map<string, Column>): string[] {
  if ((spec.serving?.onMiss ?? 'off') === 'off') return [];
  const computed = [spec.source.key, spec.source.partition].filter((c) => columns.get(c)?.fromTable === false);
  if (computed.length === 0) return [];
  return [
    `serving.onMiss: "${spec.serving!.onMiss}" needs a key filter path, but the source query computes ${computed
      .map((c) => `column "${c}"`)
      .join(
        ' and ',
      )} (not a table column), so every miss would evaluate the whole query: select the key and partition straight from a table column, put the query in a view and name it in source.table, or set serving.onMiss to "off"`,
  ];
}

/** The job's `monitor.baseline` must exist and profile the job's features. */
async function baselineProblems(pool: Pool, spec: JobFile['spec']): Promise<string[]> {
  if (!spec.monitor.profile && spec.gates !== undefined) {
    return ['gates: need profiles, but monitor.profile is false; remove the gates or profile the job'];
  }
  const baseline = spec.monitor.baseline;
  if (baseline.startsWith('run:')) {
    const id = baseline.slice(4);
    if (!(await runProfile(pool, id))) {
      return [`monitor.baseline: run ${id} has no profile (no such run, or it did not finish); pick a published run of this job`];
    }
    return [];
  }
  if (!baseline.startsWith('profile:')) return [];
  const name = baseline.slice(8);
  const profile = await namedProfile<ColumnProfile[]>(pool, name);
  if (!profile) {
    return [
      `monitor.baseline: profile "${name}" does not exist; make it with prescore profiles create ${name} --job ${spec.name} --table <training table> (see prescore profiles list)`,
    ];
  }
  const cols = profile.columns.filter((c) => c.kind === 'feature').map((c) => c.column);
  const same = cols.length === spec.source.features.length && spec.source.features.every((f) => cols.includes(f));
  if (same) return [];
  return [
    `monitor.baseline: profile "${name}" profiles ${cols.join(', ')} but the job's features are ${spec.source.features.join(', ')}; make the profile again from this job (prescore profiles delete ${name}, then create)`,
  ];
}
