import type { InputType } from '../models/signature.js';
import type { Feed } from '../models/inputs.js';

export type NumericArray =
  Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array | BigUint64Array;

export interface InferTask {
  sha256: string;
  /** The ONNX bytes over a SharedArrayBuffer: handed to every thread without a copy. */
  model: Uint8Array;
  inputName: string;
  inputType: InputType;
  /** Fixed batch dimension of the model, or null when dynamic. */
  fixedBatch: number | null;
  rows: number;
  width: number;
  features: Float32Array | Float64Array | BigInt64Array;
  outputs: string[];
  intraOpThreads: number;
  /** Set for models not fed one plain tensor: each input gathered from `features` and `text` (models/inputs.ts). */
  feeds?: Feed[];
  /** The batch's text feature columns (Utf8 offsets and bytes). */
  text?: { offsets: Int32Array; data: Uint8Array }[];
}

export interface OutputTensor {
  type: string;
  dims: number[];
  data: NumericArray | string[];
}

export type InferResult = Record<string, OutputTensor>;
