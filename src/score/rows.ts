import { HttpError } from '../errors.js';
import type { InputType } from '../models/signature.js';

/** The largest finite float32: a bigger value would reach a float32 model as ±Infinity. */
const FLOAT32_MAX = 3.4028234663852886e38;

export interface ScoreLimits {
  /** Rows in one request. */
  maxRows: number;
  /** Checks one key as the read API does (empty, too long, NUL): the problem, or null. */
  keyProblem(key: string): string | null;
}

/** Rows sent to be scored: their keys, and their features row-major in the job's feature order. */
export interface ScoreRows {
  keys: string[];
  values: Float64Array;
}

const BODY_HINT = '{"rows": [{"key": "k1", "features": {"<feature>": <number>, ...}}, ...]}';

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.slice(0, 40))}`;
  return typeof v;
}

/**
 * The body of `POST /v1/score/:job`, checked row by row against the job's features: every
 * row names exactly the job's features, each a finite number the model's input type can take
 * (what the batch run would reject is refused here, naming the row, its key and the feature).
 */
export function parseScoreBody(body: unknown, features: readonly string[], input: InputType, limits: ScoreLimits): ScoreRows {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, `the body must be a JSON object ${BODY_HINT}`);
  }
  for (const name of Object.keys(body)) {
    if (name !== 'rows') throw new HttpError(400, `unknown field "${name.slice(0, 40)}": the body has only "rows"`);
  }
  const rows = (body as { rows?: unknown }).rows;
  if (!Array.isArray(rows) || rows.length === 0 || rows.length > limits.maxRows) {
    const got = Array.isArray(rows) ? `${rows.length} rows` : rows === undefined ? 'none' : describe(rows);
    throw new HttpError(400, `rows must be an array of 1 to ${limits.maxRows} rows ${BODY_HINT} (got ${got})`);
  }
  const width = features.length;
  const keys = new Array<string>(rows.length);
  const values = new Float64Array(rows.length * width);
  const known = new Set(features);
  const list = features.join(', ');
  for (let i = 0; i < rows.length; i++) {
    const row: unknown = rows[i];
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new HttpError(400, `rows[${i}] must be an object {"key": "...", "features": {...}} (got ${describe(row)})`);
    }
    const r = row as Record<string, unknown>;
    for (const name of Object.keys(r)) {
      if (name !== 'key' && name !== 'features') {
        throw new HttpError(400, `rows[${i}]: unknown field "${name.slice(0, 40)}": a row has "key" and "features"`);
      }
    }
    const key = r.key;
    if (typeof key !== 'string') {
      throw new HttpError(
        400,
        `rows[${i}].key must be a string (got ${describe(key)}); send numeric keys as strings, numbers above 2^53 lose precision in JSON`,
      );
    }
    const problem = limits.keyProblem(key);
    if (problem) throw new HttpError(400, `rows[${i}].key ${problem}`);
    const at = `rows[${i}] (key ${JSON.stringify(key.slice(0, 100))})`;
    const feats = r.features;
    if (typeof feats !== 'object' || feats === null || Array.isArray(feats)) {
      throw new HttpError(400, `${at}: features must be an object {"<feature>": <number>} of ${list} (got ${describe(feats)})`);
    }
    const f = feats as Record<string, unknown>;
    let present = 0;
    for (let j = 0; j < width; j++) {
      const name = features[j]!;
      const v = f[name];
      if (v === undefined || !Object.hasOwn(f, name)) {
        throw new HttpError(400, `${at}: feature "${name}" is missing; the job's features are ${list}`);
      }
      present++;
      if (typeof v !== 'number') {
        const why =
          v === null
            ? 'is null; every feature needs a value (a batch run rejects such a row)'
            : `must be a number (got ${describe(v)})`;
        throw new HttpError(400, `${at}: feature "${name}" ${why}`);
      }
      // JSON has no NaN; a literal beyond the double range (1e400) parses as Infinity.
      if (!Number.isFinite(v)) throw new HttpError(400, `${at}: feature "${name}" is not a finite number (got ${v})`);
      if (input === 'float32' && Math.abs(v) > FLOAT32_MAX) {
        throw new HttpError(400, `${at}: feature "${name}" = ${v} overflows float32 (the model takes float32)`);
      }
      if (input === 'int64' && !Number.isInteger(v)) {
        throw new HttpError(400, `${at}: feature "${name}" = ${v} is not an integer (the model takes int64)`);
      }
      values[i * width + j] = v;
    }
    if (present !== Object.keys(f).length) {
      const extra = Object.keys(f).find((n) => !known.has(n))!;
      throw new HttpError(400, `${at}: unknown feature "${extra.slice(0, 60)}"; the job's features are ${list}`);
    }
    keys[i] = key;
  }
  return { keys, values };
}
