import onnxProto from 'onnx-proto';
import { InputError } from '../errors.js';

const { onnx } = onnxProto;
type Model = InstanceType<typeof onnx.ModelProto>;
type Node = NonNullable<NonNullable<Model['graph']>['node']>[number];
type ValueInfo = NonNullable<NonNullable<Model['graph']>['output']>[number];

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const STRING = onnx.TensorProto.DataType.STRING;
const TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(onnx.TensorProto.DataType).map(([k, v]) => [v as number, k.toLowerCase()]),
);

/** What a rewrite did, stored with the model (prescore.models.rewrite, migration 010). */
export interface Rewrite {
  /** sha256 of the bytes as exported, before the rewrite. */
  from: string;
  /** One line for `models list` / `models show`. */
  note: string;
  /** The graph output the probability tensor now is: same name the exporter gave the ZipMap output. */
  output: string;
  classes: (string | number)[];
}

const FIX = `export the classifier without ZipMap (skl2onnx: options={id(model): {'zipmap': False}}) and register that file`;

function isZipMap(n: Node): boolean {
  return n.opType === 'ZipMap' && n.domain === 'ai.onnx.ml';
}

function attr(node: Node, name: string) {
  return (node.attribute ?? []).find((a) => a.name === name);
}

/** The class labels of a classifier or ZipMap node, or null when it names none. */
function classLabels(node: Node): (string | number)[] | null {
  for (const name of ['classlabels_int64s', 'classlabels_ints']) {
    const a = attr(node, name);
    if (a?.ints && a.ints.length > 0) return a.ints.map((v) => Number(v.toString()));
  }
  const s = attr(node, 'classlabels_strings');
  if (s?.strings && s.strings.length > 0) return s.strings.map((b) => Buffer.from(b).toString('utf8'));
  return null;
}

function tensorElem(v: ValueInfo | undefined): number | null {
  const t = v?.type?.tensorType;
  return t && t.elemType !== null && t.elemType !== undefined ? t.elemType : null;
}

/**
 * A classifier exported with ZipMap (skl2onnx's default) gives its probabilities as
 * seq(map(label, float)), which prescore cannot store as a score. This removes the ZipMap node:
 * the [N, classes] float tensor it was fed becomes the graph output, under the name the ZipMap
 * output had (so `"score": "output_probability[1]"` works as users of skl2onnx expect). Returns
 * null when the model has no ZipMap. Refuses, naming the output and the fix, whatever would make
 * the rewrite ambiguous.
 */
export function removeZipMap(
  bytes: Uint8Array,
  what: string,
): { bytes: Uint8Array; output: string; classes: (string | number)[] } | null {
  let model: Model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    return null; // not protobuf: readSignature says so in onnxruntime's words
  }
  const graph = model.graph;
  if (!graph) return null;
  const nodes = graph.node ?? [];
  const zipmaps = nodes.filter(isZipMap);
  if (zipmaps.length === 0) return null;
  const refuse = (why: string) => new InputError(`${what}: ${why}; prescore cannot rewrite it unambiguously: ${FIX}`);
  if (zipmaps.length > 1) {
    throw refuse(`has ${zipmaps.length} ZipMap nodes (outputs ${zipmaps.map((z) => z.output?.[0]).join(', ')})`);
  }
  // protobufjs drops fields it does not know: re-encoding must give back as many bytes, or the rewrite would lose some.
  if (onnx.ModelProto.encode(model).finish().length !== bytes.length) {
    throw refuse('uses ONNX fields this build does not know, which a rewrite would drop');
  }
  const zm = zipmaps[0]!;
  const out = zm.output?.[0];
  const input = zm.input?.[0];
  if (!out || !input || (zm.input ?? []).length !== 1) throw refuse('has a ZipMap node without exactly one input and output');
  const outputs = graph.output ?? [];
  const outIndex = outputs.findIndex((o) => o.name === out);
  if (outIndex < 0) throw refuse(`its ZipMap output "${out}" is not a graph output`);
  const consumers = (name: string) => nodes.filter((n) => n !== zm && (n.input ?? []).includes(name));
  const outUsers = consumers(out);
  if (outUsers.length > 0) {
    throw refuse(`the ZipMap output "${out}" feeds node ${outUsers[0]!.name || outUsers[0]!.opType}, not only the graph output`);
  }
  const inUsers = consumers(input);
  if (inUsers.length > 0) {
    throw refuse(
      `output "${out}": the probability tensor "${input}" the ZipMap reads also feeds node ${inUsers[0]!.name || inUsers[0]!.opType}`,
    );
  }
  if (outputs.some((o) => o.name === input) || (graph.input ?? []).some((i) => i.name === input)) {
    throw refuse(`output "${out}": the probability tensor "${input}" the ZipMap reads is already a graph input or output`);
  }
  const declared = (graph.valueInfo ?? []).find((v) => v.name === input);
  const elem = tensorElem(declared);
  if (elem !== null && elem !== FLOAT) {
    throw refuse(`output "${out}": the ZipMap reads "${input}", a ${TYPE_NAMES[elem] ?? elem} tensor, where ZipMap takes float`);
  }
  const classes = classLabels(zm);
  if (!classes) throw refuse(`output "${out}": its ZipMap names no classlabels_int64s or classlabels_strings`);
  const producer = nodes.find((n) => (n.output ?? []).includes(input));
  // The label output: another graph output of the node that computed the probabilities.
  const label = producer ? outputs.find((o) => o.name !== out && (producer.output ?? []).includes(o.name ?? '')) : undefined;
  if (label) {
    const labelElem = tensorElem(label);
    const kind = typeof classes[0] === 'number' ? INT64 : STRING;
    if (labelElem !== null && labelElem !== kind) {
      throw refuse(
        `output "${out}": its ZipMap has ${kind === INT64 ? 'integer' : 'string'} class labels but the label output "${label.name}" is ${TYPE_NAMES[labelElem] ?? labelElem}`,
      );
    }
    const own = classLabels(producer!);
    if (own && own.join('\u0000') !== classes.join('\u0000')) {
      throw refuse(
        `output "${out}": its ZipMap labels the classes [${classes.join(', ')}] but ${producer!.opType} (label output "${label.name}") has [${own.join(', ')}]`,
      );
    }
  }

  // Rename the tensor to the ZipMap output's name: nothing else reads either name (checked above).
  for (const n of nodes) n.output = (n.output ?? []).map((o) => (o === input ? out : o));
  graph.node = nodes.filter((n) => n !== zm);
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => v.name !== input && v.name !== out);
  const batch = graph.input?.[0]?.type?.tensorType?.shape?.dim?.[0];
  const batchDim =
    batch?.dimValue !== undefined && batch.dimValue !== null && Number(batch.dimValue) > 0
      ? { dimValue: batch.dimValue }
      : { dimParam: batch?.dimParam || 'N' };
  outputs[outIndex] = onnx.ValueInfoProto.create({
    name: out,
    docString: outputs[outIndex]!.docString ?? '',
    type: { tensorType: { elemType: FLOAT, shape: { dim: [batchDim, { dimValue: classes.length }] } } },
  });
  // The ai.onnx.ml opset stays imported: the classifier node itself is usually ai.onnx.ml.
  return { bytes: onnx.ModelProto.encode(model).finish(), output: out, classes };
}
