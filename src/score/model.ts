import type { InferResult, OutputTensor } from '../inference/protocol.js';
import { mappedOutputs, type OutputMapping, type OutputRef } from '../models/output.js';
import type { InputType } from '../models/signature.js';

/**
 * What scoring sent features needs: one model version (its bytes in shared memory, for the
 * inference threads), its input, the job's features in the model's input order, and the
 * job's output mapping. Immutable: a promotion gives a new object.
 */
export interface ScoringModel {
  job: string;
  name: string;
  version: number;
  sha256: string;
  bytes: Uint8Array;
  input: { name: string; type: InputType; batch: number | null };
  features: string[];
  mapping: OutputMapping;
}

/** One row's values as a run would store them; `rejected` when a run would reject the row instead. */
export interface ScoredRow {
  score: number | null;
  label: string | null;
  outputs: number[] | null;
  rejected?: string;
}

/** The model outputs a mapping needs, as the inference task names them. */
export function outputsOf(model: ScoringModel): string[] {
  return mappedOutputs(model.mapping);
}

function numberAt(t: OutputTensor, i: number): number {
  const v = t.data[i];
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function column(
  result: InferResult,
  ref: OutputRef | undefined,
  rows: number,
): { t: OutputTensor; width: number; index: number } | null {
  if (!ref) return null;
  const t = result[ref.output]!;
  return { t, width: rows === 0 ? 1 : Math.max(1, t.data.length / rows), index: ref.index ?? 0 };
}

function nonFinite(v: number, field: string): string | undefined {
  if (Number.isFinite(v)) return undefined;
  return `model output ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} in ${field}`;
}

/**
 * Rows `from` .. `from + count` of a batch of `rows`, mapped as the prediction writer maps
 * them (src/sink/encode.ts): the score a double, the label text, outputs the whole last axis.
 * A score or output that is not finite makes the row `rejected`, with the reason a run records.
 */
export function mapRows(mapping: OutputMapping, result: InferResult, rows: number, from: number, count: number): ScoredRow[] {
  const score = column(result, mapping.score, rows);
  const label = column(result, mapping.label, rows);
  const outputs = column(result, mapping.outputs, rows);
  const out = new Array<ScoredRow>(count);
  for (let n = 0; n < count; n++) {
    const i = from + n;
    const row: ScoredRow = { score: null, label: null, outputs: null };
    if (score) {
      row.score = numberAt(score.t, i * score.width + score.index);
      const bad = nonFinite(row.score, 'score');
      if (bad) row.rejected = bad;
    }
    if (label) {
      const v = label.t.data[i * label.width + label.index];
      row.label = typeof v === 'string' ? v : String(v);
    }
    if (outputs) {
      const o = new Array<number>(outputs.width);
      for (let j = 0; j < outputs.width; j++) {
        o[j] = numberAt(outputs.t, i * outputs.width + j);
        row.rejected ??= nonFinite(o[j]!, 'outputs');
      }
      row.outputs = o;
    }
    out[n] = row;
  }
  return out;
}

function num(v: number | null): string {
  return v !== null && Number.isFinite(v) ? String(v) : 'null';
}

/**
 * The body of `POST /v1/score/:job`: one item per row sent, in order, with the field order
 * of the read API's items (key, model, score, label, outputs); a row a run would reject
 * carries `"rejected"` (its reason) and null values.
 */
export function scoreJson(model: { name: string; version: number }, keys: readonly string[], rows: readonly ScoredRow[]): string {
  const head = `,"model":${JSON.stringify({ name: model.name, version: model.version })},"score":`;
  let s = '{"predictions":[';
  for (let i = 0; i < keys.length; i++) {
    const r = rows[i]!;
    s += (i ? ',{"key":' : '{"key":') + JSON.stringify(keys[i]) + head;
    if (r.rejected !== undefined) {
      s += `null,"label":null,"outputs":null,"rejected":${JSON.stringify(r.rejected)}}`;
      continue;
    }
    s += num(r.score) + ',"label":' + (r.label === null ? 'null' : JSON.stringify(r.label)) + ',"outputs":';
    if (r.outputs === null) s += 'null';
    else {
      s += '[';
      for (let j = 0; j < r.outputs.length; j++) s += (j ? ',' : '') + num(r.outputs[j]!);
      s += ']';
    }
    s += '}';
  }
  return s + ']}';
}
