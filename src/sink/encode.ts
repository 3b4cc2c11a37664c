import type { InferResult, OutputTensor } from '../inference/protocol.js';
import type { OutputMapping, OutputRef } from '../models/output.js';

const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
const TRAILER = Buffer.from([0xff, 0xff]);
const FLOAT8_OID = 701;

export const COPY_HEADER = HEADER;
export const COPY_TRAILER = TRAILER;

/** The columns, in order, of the binary COPY into a run's predictions table. */
export const PREDICTION_COLUMNS = '(run_id, key, score, label, outputs)';
/** The same for its challenger predictions table: the slot (1..3) after the run id. */
export const CHALLENGER_COLUMNS = '(run_id, slot, key, score, label, outputs)';

function widthOf(t: OutputTensor, rows: number): number {
  return rows === 0 ? 1 : Math.max(1, t.data.length / rows);
}

function numberAt(t: OutputTensor, i: number): number {
  const v = t.data[i];
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

interface Column {
  tensor: OutputTensor;
  width: number;
  index: number;
}

function column(result: InferResult, ref: OutputRef | undefined, rows: number): Column | null {
  if (!ref) return null;
  const tensor = result[ref.output]!;
  const width = widthOf(tensor, rows);
  if (ref.index !== null && ref.index >= width) {
    throw new Error(`output ${ref.output} has ${width} values per row; index ${ref.index} is out of range`);
  }
  return { tensor, width, index: ref.index ?? 0 };
}

/**
 * Encodes one batch of predictions in PostgreSQL's binary COPY tuple format
 * (run_id int8, key text, score float8, label text, outputs float8[]), keys taken straight
 * from the record batch's UTF-8 bytes. With a `slot`, a challenger's rows:
 * (run_id int8, slot int2, key, score, label, outputs), CHALLENGER_COLUMNS.
 */
export function encodePredictions(
  runId: bigint,
  keys: { offsets: Int32Array; data: Uint8Array },
  rows: number,
  mapping: OutputMapping,
  result: InferResult,
  skip: Uint8Array | null = null,
  slot: number | null = null,
): Buffer {
  const score = column(result, mapping.score, rows);
  const label = column(result, mapping.label, rows);
  const outputs = column(result, mapping.outputs, rows);
  let labels: string[] | null = null;
  let labelBytes = 0;
  if (label) {
    labels = new Array<string>(rows);
    const t = label.tensor;
    for (let i = 0; i < rows; i++) {
      const v = t.data[i * label.width + label.index];
      const s = typeof v === 'string' ? v : String(v);
      labels[i] = s;
      labelBytes += Buffer.byteLength(s);
    }
  }
  const keyBytes = keys.offsets[rows]! - keys.offsets[0]!;
  const outWidth = outputs ? outputs.width : 0;
  const perRow = 2 + 12 + (slot === null ? 0 : 6) + 4 + (score ? 12 : 4) + 4 + (outputs ? 4 + 20 + outWidth * 12 : 4);
  const buf = Buffer.allocUnsafe(rows * perRow + keyBytes + labelBytes);
  let p = 0;
  for (let i = 0; i < rows; i++) {
    if (skip?.[i]) continue;
    p = buf.writeInt16BE(slot === null ? 5 : 6, p);
    p = buf.writeInt32BE(8, p);
    p = buf.writeBigInt64BE(runId, p);
    if (slot !== null) {
      p = buf.writeInt32BE(2, p);
      p = buf.writeInt16BE(slot, p);
    }
    const k0 = keys.offsets[i]!;
    const k1 = keys.offsets[i + 1]!;
    p = buf.writeInt32BE(k1 - k0, p);
    buf.set(keys.data.subarray(k0, k1), p);
    p += k1 - k0;
    if (score) {
      p = buf.writeInt32BE(8, p);
      p = buf.writeDoubleBE(numberAt(score.tensor, i * score.width + score.index), p);
    } else p = buf.writeInt32BE(-1, p);
    if (labels) {
      const s = labels[i]!;
      const lenAt = p;
      const n = buf.write(s, p + 4);
      buf.writeInt32BE(n, lenAt);
      p += 4 + n;
    } else p = buf.writeInt32BE(-1, p);
    if (outputs) {
      p = buf.writeInt32BE(20 + outWidth * 12, p);
      p = buf.writeInt32BE(1, p); // ndim
      p = buf.writeInt32BE(0, p); // no nulls
      p = buf.writeInt32BE(FLOAT8_OID, p);
      p = buf.writeInt32BE(outWidth, p);
      p = buf.writeInt32BE(1, p); // lower bound
      const base = i * outWidth;
      for (let j = 0; j < outWidth; j++) {
        p = buf.writeInt32BE(8, p);
        p = buf.writeDoubleBE(numberAt(outputs.tensor, base + j), p);
      }
    } else p = buf.writeInt32BE(-1, p);
  }
  return p === buf.length ? buf : buf.subarray(0, p);
}

/**
 * The rows of a batch a model's outputs reject (nonFiniteOutputs): a mask for
 * encodePredictions (null: none) and each rejected row's key and reason.
 */
export function outputRejects(
  keys: { offsets: Int32Array; data: Uint8Array },
  rows: number,
  result: InferResult,
  mapping: OutputMapping,
): { skip: Uint8Array | null; rejects: { key: string; reason: string }[] } {
  const bad = nonFiniteOutputs(result, rows, mapping);
  if (!bad) return { skip: null, rejects: [] };
  const skip = new Uint8Array(rows);
  const rejects: { key: string; reason: string }[] = [];
  for (const [i, reason] of bad) {
    skip[i] = 1;
    rejects.push({ key: Buffer.from(keys.data.subarray(keys.offsets[i], keys.offsets[i + 1])).toString('utf8'), reason });
  }
  return { skip, rejects };
}

/**
 * Rows whose stored score or outputs are NaN or ±Infinity (a model that divides by zero, an
 * exp that overflows): such a prediction is not stored but rejected, with its reason.
 */
export function nonFiniteOutputs(result: InferResult, rows: number, mapping: OutputMapping): Map<number, string> | null {
  let bad: Map<number, string> | null = null;
  for (const [field, ref] of [
    ['score', mapping.score],
    ['outputs', mapping.outputs],
  ] as const) {
    const col = column(result, ref, rows);
    if (!col) continue;
    const all = field === 'outputs';
    for (let i = 0; i < rows; i++) {
      const from = i * col.width + (all ? 0 : col.index);
      const to = all ? (i + 1) * col.width : from + 1;
      for (let j = from; j < to; j++) {
        const v = numberAt(col.tensor, j);
        if (Number.isFinite(v)) continue;
        bad ??= new Map();
        if (!bad.has(i)) bad.set(i, `model output ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} in ${field}`);
        break;
      }
    }
  }
  return bad;
}
