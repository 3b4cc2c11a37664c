import ort from 'onnxruntime-node';
import { InputError } from '../errors.js';
import { unfeedableType } from './inputs.js';

/** dtype names as onnxruntime reports them. */
export type TensorType = string;

export interface TensorSignature {
  name: string;
  type: TensorType;
  /** null: a dynamic (symbolic) dimension. An empty array: rank unknown. */
  shape: (number | null)[];
}

export interface ModelSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
}

export const NUMERIC_INPUT_TYPES = ['float32', 'float64', 'int64'] as const;
export type InputType = (typeof NUMERIC_INPUT_TYPES)[number];
export const NUMERIC_OUTPUT_TYPES = ['float32', 'float64', 'int64', 'int32', 'int8', 'uint8', 'int16', 'bool', 'float16'];

function dims(shape: ReadonlyArray<number | string>): (number | null)[] {
  return shape.map((d) => (typeof d === 'number' && d >= 0 ? d : null));
}

/**
 * Loads the bytes in onnxruntime (the same runtime that will score them) and reads the
 * input/output signature. Refuses what prescore cannot run, saying what to do instead.
 */
export async function readSignature(bytes: Uint8Array, what: string): Promise<ModelSignature> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new InputError(`${what} is not a valid ONNX model that onnxruntime can load (${reason}); export it again`, {
      cause: err,
    });
  }
  try {
    const inputs: TensorSignature[] = [];
    for (const m of session.inputMetadata) {
      if (!m.isTensor) throw new InputError(`${what}: input "${m.name}" is not a tensor; prescore feeds one tensor`);
      const unfeedable = unfeedableType(m.type);
      if (unfeedable) throw new InputError(`${what}: input "${m.name}" is ${unfeedable}`);
      inputs.push({ name: m.name, type: m.type, shape: dims(m.shape) });
    }
    const outputs: TensorSignature[] = [];
    for (const m of session.outputMetadata) {
      if (!m.isTensor) {
        throw new InputError(
          `${what}: output "${m.name}" is not a tensor (a sequence or map, as a classifier exported with ZipMap has); ` +
            `export it without ZipMap (skl2onnx: options={'zipmap': False}) so probabilities are a tensor`,
        );
      }
      outputs.push({ name: m.name, type: m.type, shape: dims(m.shape) });
    }
    return { inputs, outputs };
  } finally {
    await session.release();
  }
}
