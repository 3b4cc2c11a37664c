/** The parts of a model's signature (models/signature.ts) this reads; kept apart so signature.ts can use this file. */
interface TensorSignature {
  name: string;
  type: string;
  shape: (number | null)[];
}
interface ModelSignature {
  inputs: TensorSignature[];
}

/**
 * Model inputs beyond one [batch, features] float32/float64/int64 tensor: several named inputs
 * (skl2onnx pipelines take one per column), narrower integers, bool, float16 and strings.
 * The chunk reader still decodes each row once, into one row-major matrix of the numeric
 * feature columns (the "carrier": float64, or int64 when every numeric input is an integer type,
 * so int64 values stay exact) plus one UTF-8 column per text feature; the inference thread
 * gathers each input's columns from them and converts to the input's dtype. Values a dtype
 * cannot hold exactly are bad rows, found by the reader (`valueProblem`) under `onBadRow`.
 */

export const FEED_TYPES = [
  'float32',
  'float64',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
  'float16',
  'string',
] as const;
export type FeedType = (typeof FEED_TYPES)[number];
/** The types the plain path (one input, fed the whole matrix as is) takes. */
const PLAIN_TYPES = new Set(['float32', 'float64', 'int64']);
const INTEGER_TYPES = new Set<string>(['int64', 'int32', 'int16', 'int8', 'uint8', 'bool']);

/** One model input and where its values come from. */
export interface Feed {
  name: string;
  type: FeedType;
  /** Positions of its columns: in the numeric matrix, or (type string) among the text columns. */
  columns: number[];
  /** The source column names, in the same order (for messages). */
  names: string[];
  /** 1: the input is [batch] (one column); 2: [batch, columns]. */
  rank: 1 | 2;
}

/** What kind of source column a PostgreSQL type is, as a feature. */
export type ColumnKind = 'numeric' | 'bool' | 'text';

export function columnKind(typname: string): ColumnKind | null {
  if (['int2', 'int4', 'int8', 'float4', 'float8', 'numeric'].includes(typname)) return 'numeric';
  if (typname === 'bool') return 'bool';
  if (['text', 'varchar', 'bpchar'].includes(typname)) return 'text';
  return null;
}

/** Why prescore cannot feed an input of this ONNX type, with the fix, or null when it can. */
export function unfeedableType(type: string): string | null {
  if ((FEED_TYPES as readonly string[]).includes(type)) return null;
  if (/^uint(16|32|64)$/.test(type)) {
    return `${type}, which prescore cannot feed (no PostgreSQL column holds it exactly): give the model an int64 input (a Cast in the graph) and export it again`;
  }
  return `${type}, which prescore cannot feed: export the model with float32, float64, an integer type, bool or string inputs`;
}

/**
 * True when the job goes through feeds rather than the plain path: an `inputs` mapping, several
 * inputs, or one input of a type or rank the plain path does not take.
 */
export function needsFeeds(sig: ModelSignature, inputs: Record<string, string[]> | undefined): boolean {
  if (inputs !== undefined) return true;
  if (sig.inputs.length !== 1) return true;
  const only = sig.inputs[0]!;
  return !PLAIN_TYPES.has(only.type) || only.shape.length !== 2;
}

/** The matrix dtype: int64 when every numeric input is an integer or bool type (exact), else float64. */
export function carrierFor(sig: ModelSignature): 'float64' | 'int64' {
  const numeric = sig.inputs.filter((i) => i.type !== 'string');
  return numeric.length > 0 && numeric.every((i) => INTEGER_TYPES.has(i.type)) ? 'int64' : 'float64';
}

/** Inputs of two models that can share one set of feeds: same names, dtypes and shapes. */
export function sameInputs(a: ModelSignature, b: ModelSignature): boolean {
  const key = (s: TensorSignature[]) =>
    JSON.stringify(s.map((i) => [i.name, i.type, i.shape]).sort((x, y) => String(x[0]).localeCompare(String(y[0]))));
  return key(a.inputs) === key(b.inputs);
}

export interface FeatureColumn {
  name: string;
  kind: ColumnKind;
  /** As PostgreSQL prints it, for messages. */
  formatted: string;
}

export interface FeedPlan {
  feeds: Feed[];
  /** Per feature (in source.features order): the dtypes its values must fit. */
  targets: FeedType[][];
  /** The fixed batch dimension all inputs share, or null. */
  batch: number | null;
  problems: string[];
}

const MAX_SAFE = 2 ** 53;
const FLOAT32_MAX = 3.4028234663852886e38;
/** The smallest magnitude float16 rounds to infinity (round to nearest even from 65504). */
const FLOAT16_OVERFLOW = 65520;
const RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int16: [-32768, 32767],
  int8: [-128, 127],
  uint8: [0, 255],
};

/**
 * Why `v` (finite, from column `column`) does not fit an input of `type`, or null. `carrier` is the
 * matrix dtype: int64 inputs through a float64 matrix must stay within 2^53 to stay exact.
 */
export function valueProblem(v: number, type: FeedType, column: string, carrier: string): string | null {
  switch (type) {
    case 'float64':
    case 'string':
      return null;
    case 'float32':
      return Math.abs(v) > FLOAT32_MAX ? `${column} = ${v} overflows float32` : null;
    case 'float16':
      return Math.abs(v) >= FLOAT16_OVERFLOW ? `${column} = ${v} overflows float16 (largest 65504)` : null;
    case 'bool':
      return v === 0 || v === 1 ? null : `value ${v} in column ${column} is not 0 or 1 (the model takes bool)`;
    case 'int64':
      if (!Number.isInteger(v)) return `value ${v} in column ${column} is not an integer (the model takes int64)`;
      return carrier === 'float64' && Math.abs(v) > MAX_SAFE
        ? `value ${v} in column ${column} is beyond 2^53, which this model's mixed float and int64 inputs cannot carry exactly`
        : null;
    default: {
      if (!Number.isInteger(v)) return `value ${v} in column ${column} is not an integer (the model takes ${type})`;
      const [lo, hi] = RANGES[type]!;
      return v < lo || v > hi ? `value ${v} in column ${column} is out of range for ${type} (${lo} to ${hi})` : null;
    }
  }
}

/**
 * Maps the job's features to the model's inputs: `inputs` ({"age": ["age"], "num": ["f1", "f2"]})
 * or, without it, a single-input model gets every feature in order. Every model input must be
 * mapped, every listed column must be one of source.features and every feature must feed some
 * input. Returns every problem, each naming the field and the fix.
 */
export function planFeeds(
  sig: ModelSignature,
  where: string,
  inputs: Record<string, string[]> | undefined,
  features: FeatureColumn[],
): FeedPlan {
  const problems: string[] = [];
  const byName = new Map(features.map((f, i) => [f.name, i]));
  const numericPos = new Map<string, number>();
  const textPos = new Map<string, number>();
  for (const f of features)
    (f.kind === 'text' ? textPos : numericPos).set(f.name, (f.kind === 'text' ? textPos : numericPos).size);
  const targets: FeedType[][] = features.map(() => []);
  const names = sig.inputs.map((i) => i.name);
  let mapping: Record<string, string[]>;
  if (inputs === undefined) {
    if (sig.inputs.length !== 1) {
      problems.push(
        `model: ${where} has ${sig.inputs.length} inputs (${names.join(', ')}): map the job's features to them, e.g. "inputs": {${names
          .slice(0, 2)
          .map((n) => `"${n}": [...]`)
          .join(', ')}}`,
      );
      return { feeds: [], targets, batch: null, problems };
    }
    mapping = { [names[0]!]: features.map((f) => f.name) };
  } else {
    mapping = inputs;
    for (const key of Object.keys(inputs)) {
      if (!names.includes(key)) problems.push(`inputs.${key}: ${where} has no input "${key}" (its inputs: ${names.join(', ')})`);
    }
    for (const n of names) {
      if (!(n in inputs)) problems.push(`inputs: ${where} input "${n}" is not mapped: add "${n}": [<columns>] to inputs`);
    }
    const used = new Set(Object.values(inputs).flat());
    features.forEach((f, i) => {
      if (!used.has(f.name)) {
        problems.push(`source.features[${i}]: column "${f.name}" feeds no model input: list it in inputs, or remove it`);
      }
    });
  }
  const feeds: Feed[] = [];
  const batches = new Set<number>();
  let dynamic = false;
  for (const inp of sig.inputs) {
    const cols = mapping[inp.name];
    if (!cols) continue;
    const field = inputs === undefined ? 'source.features' : `inputs.${inp.name}`;
    const bad = unfeedableType(inp.type);
    if (bad) {
      problems.push(`${field}: ${where} input "${inp.name}" is ${bad}`);
      continue;
    }
    const type = inp.type as FeedType;
    const rank = inp.shape.length;
    const width = rank === 2 ? inp.shape[1] : rank === 1 ? 1 : undefined;
    if (width === undefined) {
      problems.push(
        `${field}: ${where} input "${inp.name}" has shape [${inp.shape.map((d) => d ?? '?').join(', ')}]; prescore feeds [batch] or [batch, columns]`,
      );
      continue;
    }
    if (width !== null && width !== cols.length) {
      problems.push(
        `${field}: lists ${cols.length} column(s) but ${where} input "${inp.name}" takes ${width} per row: list exactly its columns, in its order`,
      );
      continue;
    }
    let ok = true;
    cols.forEach((c, j) => {
      const at = byName.get(c);
      const col = inputs === undefined ? `source.features[${j}]` : `inputs.${inp.name}[${j}]`;
      if (at === undefined) {
        problems.push(`${col}: column "${c}" is not in source.features: add it there (source.features lists every column read)`);
        ok = false;
        return;
      }
      const f = features[at]!;
      if (type === 'string' && f.kind !== 'text') {
        problems.push(
          `${col}: column "${c}" is ${f.formatted} but ${where} input "${inp.name}" takes strings: feed it a text column, or cast it in a source query ("${c}"::text AS ${c})`,
        );
        ok = false;
      } else if (type !== 'string' && f.kind === 'text') {
        problems.push(
          `${col}: column "${c}" is ${f.formatted} but ${where} input "${inp.name}" takes ${type}: feed it a numeric column, or encode the text in the graph (a string input into an ai.onnx.ml OneHotEncoder or LabelEncoder)`,
        );
        ok = false;
      } else if (type !== 'string') {
        targets[at]!.push(type);
      }
    });
    if (!ok) continue;
    const b = inp.shape[0];
    if (b === null || b === undefined) dynamic = true;
    else batches.add(b);
    feeds.push({
      name: inp.name,
      type,
      columns: cols.map((c) => (type === 'string' ? textPos.get(c)! : numericPos.get(c)!)),
      names: cols,
      rank: rank === 1 ? 1 : 2,
    });
  }
  if (batches.size > 1 || (batches.size === 1 && dynamic)) {
    problems.push(
      `model: ${where} inputs have different batch dimensions (${sig.inputs.map((i) => `${i.name}: ${i.shape[0] ?? '?'}`).join(', ')}); export them with one batch dimension`,
    );
  }
  return { feeds, targets, batch: batches.size === 1 && !dynamic ? [...batches][0]! : null, problems };
}

/**
 * Paths that score rows one tensor at a time (`run --sample`, the API's POST /v1/score, bundles)
 * do not gather feeds: they refuse such jobs, saying so, rather than feed the model wrongly.
 */
export function feedsUnsupported(job: { name: string; feeds?: unknown }, what: string): string | null {
  return job.feeds
    ? `job ${job.name} maps its features to several or non-float inputs (inputs, text, int32/bool/float16); ${what} scores only single-input float32/float64/int64 models: use prescore run`
    : null;
}
