import ort from 'onnxruntime-node';
import { feedTensors, numericOutput } from './feeds.js';
import type { InferResult, InferTask, NumericArray, OutputTensor } from './protocol.js';

// One session per model sha256 per thread; a thread serves every run that uses the model.
const sessions = new Map<string, Promise<ort.InferenceSession>>();

function session(task: InferTask): Promise<ort.InferenceSession> {
  let s = sessions.get(task.sha256);
  if (!s) {
    // onnxruntime takes only ArrayBuffer-backed bytes: copy the shared model once per thread.
    s = ort.InferenceSession.create(new Uint8Array(task.model), {
      intraOpNumThreads: task.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // prescore reports a failed batch itself (naming the keys); onnxruntime's own log would repeat it.
      logSeverityLevel: 4,
    });
    s.catch(() => sessions.delete(task.sha256));
    sessions.set(task.sha256, s);
  }
  return s;
}

type Ctor = { new (n: number): NumericArray };

function concat(parts: OutputTensor[], rows: number): OutputTensor {
  const first = parts[0]!;
  const perRow = first.dims.slice(1).reduce((a, b) => a * b, 1);
  const dims = [rows, ...first.dims.slice(1)];
  if (Array.isArray(first.data)) {
    const data = parts.flatMap((p) => p.data as string[]).slice(0, rows * perRow);
    return { type: first.type, dims, data };
  }
  const data = new ((first.data as NumericArray).constructor as Ctor)(rows * perRow);
  let at = 0;
  for (const p of parts) {
    const src = p.data as NumericArray;
    const take = Math.min(src.length, data.length - at);
    (data as Float64Array).set((src as Float64Array).subarray(0, take), at);
    at += take;
  }
  return { type: first.type, dims, data };
}

/**
 * Runs the model over `rows` rows. A model with a fixed batch dimension B is fed exactly B
 * rows at a time, the last slice padded with zeros and its padding dropped.
 */
export default async function infer(task: InferTask): Promise<InferResult> {
  const s = await session(task);
  const { rows, width } = task;
  const step = task.fixedBatch ?? rows;
  const collected: Record<string, OutputTensor[]> = Object.fromEntries(task.outputs.map((o) => [o, []]));
  for (let start = 0; start < rows; start += step) {
    const n = Math.min(step, rows - start);
    if (task.feeds) {
      const out = await s.run(feedTensors(task, start, n, step), task.outputs);
      for (const name of task.outputs) {
        const t = out[name] as ort.Tensor;
        collected[name]!.push(numericOutput({ type: t.type, dims: [...t.dims], data: t.data as NumericArray | string[] }));
      }
      continue;
    }
    let slice = task.features.subarray(start * width, (start + n) * width);
    if (n < step) {
      const padded = new (slice.constructor as { new (n: number): typeof slice })(step * width);
      (padded as Float64Array).set(slice as Float64Array);
      slice = padded;
    }
    const tensor = new ort.Tensor(task.inputType, slice, [step, width]);
    const out = await s.run({ [task.inputName]: tensor }, task.outputs);
    for (const name of task.outputs) {
      const t = out[name] as ort.Tensor;
      collected[name]!.push(numericOutput({ type: t.type, dims: [...t.dims], data: t.data as NumericArray | string[] }));
    }
  }
  const result: InferResult = {};
  for (const name of task.outputs) {
    const parts = collected[name]!;
    result[name] = parts.length === 1 && parts[0]!.dims[0] === rows ? parts[0]! : concat(parts, rows);
  }
  return result;
}

/** The same, with the time the thread spent on it (ms): what each model of a chunk costs. */
export async function inferTimed(task: InferTask): Promise<{ result: InferResult; ms: number }> {
  const started = performance.now();
  const result = await infer(task);
  return { result, ms: performance.now() - started };
}
