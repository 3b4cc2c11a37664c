import ort from 'onnxruntime-node';
import type { Feed } from '../models/inputs.js';
import { decodeStrings } from '../source/text.js';
import type { InferTask, NumericArray, OutputTensor } from './protocol.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE 754 half-precision bits of a number, rounded to nearest even (through float32 first, as
 * a Cast from float would). onnxruntime takes float16 tensors as a Uint16Array of these bits
 * (Node 20 has no Float16Array).
 */
export function toFloat16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** The number float16 bits stand for. */
export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

type Ctor = new (n: number) => NumericArray;
const ARRAYS: Record<string, Ctor> = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  float16: Uint16Array,
};

/**
 * Input tensors for rows [start, start + n) of the batch, `step` rows each (a fixed batch
 * dimension pads the last slice: zeros, empty strings). The reader already refused values an
 * input's dtype cannot hold (models/inputs.ts valueProblem), so each conversion here is exact,
 * float16 and float32 aside, which round to nearest.
 */
export function feedTensors(task: InferTask, start: number, n: number, step: number): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  const width = task.width;
  const src = task.features;
  for (const feed of task.feeds as Feed[]) {
    const k = feed.columns.length;
    const dims = feed.rank === 1 ? [step] : [step, k];
    if (feed.type === 'string') {
      const cols = feed.columns.map((c) => {
        const t = task.text![c]!;
        return decodeStrings(t.offsets, t.data, start, start + n);
      });
      const data = new Array<string>(step * k).fill('');
      for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) data[r * k + j] = cols[j]![r]!;
      out[feed.name] = new ort.Tensor('string', data, dims);
      continue;
    }
    const data = new ARRAYS[feed.type]!(step * k);
    const big = src instanceof BigInt64Array;
    for (let r = 0; r < n; r++) {
      const row = (start + r) * width;
      for (let j = 0; j < k; j++) {
        const v = src[row + feed.columns[j]!]!;
        const at = r * k + j;
        if (feed.type === 'int64') (data as BigInt64Array)[at] = big ? (v as bigint) : BigInt(v as number);
        else if (feed.type === 'float16') data[at] = toFloat16Bits(Number(v));
        else if (feed.type === 'bool') data[at] = Number(v) !== 0 ? 1 : 0;
        else data[at] = Number(v);
      }
    }
    out[feed.name] = new ort.Tensor(feed.type, data as never, dims);
  }
  return out;
}

/** float16 outputs come back as their bits (Uint16Array): stored as the numbers they are. */
export function numericOutput(t: OutputTensor): OutputTensor {
  if (t.type !== 'float16' || !(t.data instanceof Uint16Array)) return t;
  return { type: 'float32', dims: t.dims, data: Float32Array.from(t.data, fromFloat16Bits) };
}
