import fs from 'node:fs';
import path from 'node:path';
import { buildModel, type NodeSpec } from '../src/models/onnx-writer.js';

/**
 * The ONNX models prescore's tests and benchmarks use, each with its expected outputs
 * computed independently in plain TypeScript from the same parameters. Deterministic: the
 * same seed writes the same bytes.
 */

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32 = Math.fround;

export interface Expected {
  score?: number;
  label?: string;
  outputs?: number[];
}

export interface TestModel {
  name: string;
  bytes: Uint8Array;
  features: number;
  /** Expected stored values for one row of features (as the model sees them). */
  expect(x: number[]): Expected;
  /** The job's output mapping for this model (undefined: none needed). */
  output?: Record<string, string>;
}

function matrix(r: () => number, rows: number, cols: number, scale: number): number[] {
  return Array.from({ length: rows * cols }, () => f32((r() * 2 - 1) * scale));
}

function dense(x: number[], w: number[], b: number[], out: number): number[] {
  const y = b.slice();
  for (let j = 0; j < out; j++) for (let i = 0; i < x.length; i++) y[j]! += x[i]! * w[i * out + j]!;
  return y;
}

export function linearModel(features = 4, seed = 1, options: { batch?: number; type?: 'float32' | 'float64' } = {}): TestModel {
  const r = rng(seed);
  const type = options.type ?? 'float32';
  const w = matrix(r, features, 1, 1).map((v) => (type === 'float64' ? v : f32(v)));
  const b = [f32(r())];
  const bytes = buildModel({
    inputs: [{ name: 'x', type, shape: [options.batch ?? 'N', features] }],
    outputs: [{ name: 'y', type, shape: [options.batch ?? 'N', 1] }],
    initializers: [
      { name: 'W', type, dims: [features, 1], values: w },
      { name: 'B', type, dims: [1], values: b },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'W'], outputs: ['xw'] },
      { op: 'Add', inputs: ['xw', 'B'], outputs: ['y'] },
    ],
  });
  return {
    name: options.batch ? `linear-b${options.batch}` : `linear-${type}`,
    bytes,
    features,
    expect: (x) => ({ score: dense(x, w, b, 1)[0]! }),
  };
}

/** Integer features: Cast(int64 -> float) then a linear layer. */
export function int64Model(features = 3, seed = 5): TestModel {
  const r = rng(seed);
  const w = matrix(r, features, 1, 1);
  const b = [f32(r())];
  const bytes = buildModel({
    inputs: [{ name: 'x', type: 'int64', shape: ['N', features] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['N', 1] }],
    initializers: [
      { name: 'W', type: 'float32', dims: [features, 1], values: w },
      { name: 'B', type: 'float32', dims: [1], values: b },
    ],
    nodes: [
      { op: 'Cast', inputs: ['x'], outputs: ['xf'], attrs: { to: { i: 1 } } },
      { op: 'MatMul', inputs: ['xf', 'W'], outputs: ['xw'] },
      { op: 'Add', inputs: ['xw', 'B'], outputs: ['y'] },
    ],
  });
  return { name: 'int64-linear', bytes, features, expect: (x) => ({ score: dense(x, w, b, 1)[0]! }) };
}

export function mlpModel(features = 32, hidden = 64, seed = 2): TestModel {
  const r = rng(seed);
  const w1 = matrix(r, features, hidden, 1 / Math.sqrt(features));
  const b1 = matrix(r, 1, hidden, 0.1);
  const w2 = matrix(r, hidden, hidden, 1 / Math.sqrt(hidden));
  const b2 = matrix(r, 1, hidden, 0.1);
  const w3 = matrix(r, hidden, 1, 1 / Math.sqrt(hidden));
  const b3 = matrix(r, 1, 1, 0.1);
  const relu = (v: number[]) => v.map((x) => Math.max(0, x));
  const bytes = buildModel({
    inputs: [{ name: 'input', type: 'float32', shape: ['batch', features] }],
    outputs: [{ name: 'score', type: 'float32', shape: ['batch', 1] }],
    initializers: [
      { name: 'W1', type: 'float32', dims: [features, hidden], values: w1 },
      { name: 'B1', type: 'float32', dims: [hidden], values: b1 },
      { name: 'W2', type: 'float32', dims: [hidden, hidden], values: w2 },
      { name: 'B2', type: 'float32', dims: [hidden], values: b2 },
      { name: 'W3', type: 'float32', dims: [hidden, 1], values: w3 },
      { name: 'B3', type: 'float32', dims: [1], values: b3 },
    ],
    nodes: [
      { op: 'Gemm', inputs: ['input', 'W1', 'B1'], outputs: ['h1'] },
      { op: 'Relu', inputs: ['h1'], outputs: ['a1'] },
      { op: 'Gemm', inputs: ['a1', 'W2', 'B2'], outputs: ['h2'] },
      { op: 'Relu', inputs: ['h2'], outputs: ['a2'] },
      { op: 'Gemm', inputs: ['a2', 'W3', 'B3'], outputs: ['score'] },
    ],
  });
  return {
    name: 'mlp',
    bytes,
    features,
    expect: (x) => ({ score: dense(relu(dense(relu(dense(x, w1, b1, hidden)), w2, b2, hidden)), w3, b3, 1)[0]! }),
  };
}

/** A gradient-boosted-style ensemble: TreeEnsembleRegressor from ai.onnx.ml, SUM of leaves. */
export function treeModel(features = 32, trees = 100, depth = 5, seed = 3): TestModel {
  const r = rng(seed);
  const attrs = {
    treeIds: [] as number[],
    nodeIds: [] as number[],
    featureIds: [] as number[],
    values: [] as number[],
    modes: [] as string[],
    trueIds: [] as number[],
    falseIds: [] as number[],
    targetTree: [] as number[],
    targetNode: [] as number[],
    weights: [] as number[],
  };
  interface Node {
    feature: number;
    threshold: number;
    left: number;
    right: number;
    leaf: number | null;
  }
  const forest: Node[][] = [];
  for (let t = 0; t < trees; t++) {
    const nodes: Node[] = [];
    const grow = (d: number): number => {
      const id = nodes.length;
      nodes.push({ feature: 0, threshold: 0, left: -1, right: -1, leaf: null });
      if (d === depth) {
        nodes[id]!.leaf = f32((r() * 2 - 1) * 0.1);
      } else {
        nodes[id]!.feature = Math.floor(r() * features);
        nodes[id]!.threshold = f32(r() * 2 - 1);
        nodes[id]!.left = grow(d + 1);
        nodes[id]!.right = grow(d + 1);
      }
      return id;
    };
    grow(0);
    forest.push(nodes);
    nodes.forEach((n, id) => {
      attrs.treeIds.push(t);
      attrs.nodeIds.push(id);
      attrs.featureIds.push(n.feature);
      attrs.values.push(n.threshold);
      attrs.modes.push(n.leaf === null ? 'BRANCH_LEQ' : 'LEAF');
      attrs.trueIds.push(n.leaf === null ? n.left : 0);
      attrs.falseIds.push(n.leaf === null ? n.right : 0);
      if (n.leaf !== null) {
        attrs.targetTree.push(t);
        attrs.targetNode.push(id);
        attrs.weights.push(n.leaf);
      }
    });
  }
  const node: NodeSpec = {
    op: 'TreeEnsembleRegressor',
    domain: 'ai.onnx.ml',
    inputs: ['input'],
    outputs: ['variable'],
    attrs: {
      n_targets: { i: 1 },
      aggregate_function: { s: 'SUM' },
      post_transform: { s: 'NONE' },
      nodes_treeids: { ints: attrs.treeIds },
      nodes_nodeids: { ints: attrs.nodeIds },
      nodes_featureids: { ints: attrs.featureIds },
      nodes_values: { floats: attrs.values },
      nodes_modes: { strings: attrs.modes },
      nodes_truenodeids: { ints: attrs.trueIds },
      nodes_falsenodeids: { ints: attrs.falseIds },
      nodes_missing_value_tracks_true: { ints: attrs.treeIds.map(() => 0) },
      target_treeids: { ints: attrs.targetTree },
      target_nodeids: { ints: attrs.targetNode },
      target_ids: { ints: attrs.targetTree.map(() => 0) },
      target_weights: { floats: attrs.weights },
    },
  };
  const bytes = buildModel({
    ml: true,
    inputs: [{ name: 'input', type: 'float32', shape: ['N', features] }],
    outputs: [{ name: 'variable', type: 'float32', shape: ['N', 1] }],
    nodes: [node],
  });
  return {
    name: 'trees',
    bytes,
    features,
    expect: (x) => {
      let sum = 0;
      for (const nodes of forest) {
        let n = nodes[0]!;
        while (n.leaf === null) n = nodes[x[n.feature]! <= n.threshold ? n.left : n.right]!;
        sum += n.leaf;
      }
      return { score: sum };
    },
  };
}

/** Binary classifier: label (int64) and probabilities [N,2] (standard ops, no ZipMap). */
export function binaryModel(features = 3, seed = 4): TestModel {
  const r = rng(seed);
  const w = matrix(r, features, 1, 1);
  const b = [f32(r() - 0.5)];
  const bytes = buildModel({
    inputs: [{ name: 'x', type: 'float32', shape: ['N', features] }],
    outputs: [
      { name: 'label', type: 'int64', shape: ['N'] },
      { name: 'probabilities', type: 'float32', shape: ['N', 2] },
    ],
    initializers: [
      { name: 'W', type: 'float32', dims: [features, 1], values: w },
      { name: 'B', type: 'float32', dims: [1], values: b },
      { name: 'one', type: 'float32', dims: [1], values: [1] },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'W'], outputs: ['xw'] },
      { op: 'Add', inputs: ['xw', 'B'], outputs: ['z'] },
      { op: 'Sigmoid', inputs: ['z'], outputs: ['p1'] },
      { op: 'Sub', inputs: ['one', 'p1'], outputs: ['p0'] },
      { op: 'Concat', inputs: ['p0', 'p1'], outputs: ['probabilities'], attrs: { axis: { i: 1 } } },
      { op: 'ArgMax', inputs: ['probabilities'], outputs: ['label'], attrs: { axis: { i: 1 }, keepdims: { i: 0 } } },
    ],
  });
  return {
    name: 'binary',
    bytes,
    features,
    output: { score: 'probabilities[1]', label: 'label', outputs: 'probabilities' },
    expect: (x) => {
      const p1 = 1 / (1 + Math.exp(-dense(x, w, b, 1)[0]!));
      return { score: p1, label: p1 > 1 - p1 ? '1' : '0', outputs: [1 - p1, p1] };
    },
  };
}

export function softmax(z: number[]): number[] {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, c) => a + c, 0);
  return e.map((v) => v / s);
}

/** Multi-class classifier with string labels: ai.onnx.ml LinearClassifier, softmax. */
export function multiclassModel(
  features = 4,
  classes = ['bronze', 'silver', 'gold'],
  seed = 6,
  params?: { coefficients: number[]; intercepts: number[] },
): TestModel {
  const r = rng(seed);
  const coef = params?.coefficients ?? matrix(r, classes.length, features, 1);
  const icpt = params?.intercepts ?? matrix(r, 1, classes.length, 0.5);
  const bytes = buildModel({
    ml: true,
    inputs: [{ name: 'x', type: 'float32', shape: ['N', features] }],
    outputs: [
      { name: 'label', type: 'string', shape: ['N'] },
      { name: 'probabilities', type: 'float32', shape: ['N', classes.length] },
    ],
    nodes: [
      {
        op: 'LinearClassifier',
        domain: 'ai.onnx.ml',
        inputs: ['x'],
        outputs: ['label', 'probabilities'],
        attrs: {
          classlabels_strings: { strings: classes },
          coefficients: { floats: coef },
          intercepts: { floats: icpt },
          multi_class: { i: 0 },
          post_transform: { s: 'SOFTMAX' },
        },
      },
    ],
  });
  return {
    name: 'multiclass',
    bytes,
    features,
    output: { score: `probabilities[${classes.length - 1}]`, label: 'label', outputs: 'probabilities' },
    expect: (x) => {
      const z = classes.map((_, c) => icpt[c]! + x.reduce((a, v, i) => a + v * f32(coef[c * features + i]!), 0));
      const p = softmax(z);
      const best = p.indexOf(Math.max(...p));
      return { score: p[classes.length - 1]!, label: classes[best]!, outputs: p };
    },
  };
}

/** A classifier exported with ZipMap (probabilities as seq(map)): prescore must refuse it. */
export function zipmapModel(): Uint8Array {
  return buildModel({
    ml: true,
    inputs: [{ name: 'x', type: 'float32', shape: ['N', 2] }],
    outputs: [{ name: 'output_probability', type: 'zipmap', shape: null }],
    nodes: [
      { op: 'Softmax', inputs: ['x'], outputs: ['p'], attrs: { axis: { i: 1 } } },
      {
        op: 'ZipMap',
        domain: 'ai.onnx.ml',
        inputs: ['p'],
        outputs: ['output_probability'],
        attrs: { classlabels_int64s: { ints: [0, 1] } },
      },
    ],
  });
}

/**
 * Looks its features up in a 10-entry table (Gather on the features cast to int64): rows whose
 * features round outside [-10, 9] make onnxruntime throw, as a model that fails on some data.
 */
export function gatherModel(features = 4): TestModel {
  const table = Array.from({ length: 10 }, (_, i) => f32(i * 0.5 - 1));
  const bytes = buildModel({
    inputs: [{ name: 'x', type: 'float32', shape: ['N', features] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['N', 1] }],
    initializers: [
      { name: 'table', type: 'float32', dims: [10], values: table },
      { name: 'axes', type: 'int64', dims: [1], values: [1] },
    ],
    nodes: [
      { op: 'Cast', inputs: ['x'], outputs: ['xi'], attrs: { to: { i: 7 } } },
      { op: 'Gather', inputs: ['table', 'xi'], outputs: ['g'] },
      { op: 'ReduceSum', inputs: ['g', 'axes'], outputs: ['y'], attrs: { keepdims: { i: 1 } } },
    ],
  });
  return {
    name: 'gather',
    bytes,
    features,
    expect: (x) => ({ score: x.reduce((a, v) => a + table[(Math.trunc(v) + 10) % 10]!, 0) }),
  };
}

export function allTestModels(): TestModel[] {
  return [
    linearModel(),
    linearModel(4, 1, { type: 'float64' }),
    linearModel(4, 1, { batch: 1 }),
    int64Model(),
    mlpModel(),
    treeModel(),
    binaryModel(),
    multiclassModel(),
    gatherModel(),
  ];
}

export function writeTestModels(dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const m of allTestModels()) {
    const file = path.join(dir, `${m.name}.onnx`);
    fs.writeFileSync(file, m.bytes);
    written.push(file);
  }
  fs.writeFileSync(path.join(dir, 'zipmap.onnx'), zipmapModel());
  fs.writeFileSync(path.join(dir, 'corrupt.onnx'), Buffer.from('this is not an onnx model'));
  return written;
}
