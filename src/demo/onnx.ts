import onnxProto from 'onnx-proto';

/**
 * A small builder over the ONNX protobuf schema, enough to write the models prescore's
 * demo and tests use (standard ops and ai.onnx.ml) without any Python toolchain.
 */
const { onnx } = onnxProto;

export type Dim = number | string;
export type ElemType =
  'float32' | 'float64' | 'int64' | 'string' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool' | 'float16' | 'uint64';

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  string: onnx.TensorProto.DataType.STRING,
  int32: onnx.TensorProto.DataType.INT32,
  int16: onnx.TensorProto.DataType.INT16,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
  uint64: onnx.TensorProto.DataType.UINT64,
};

export interface ValueInfo {
  name: string;
  /** 'zipmap': the seq(map(int64, float)) output of ai.onnx.ml ZipMap (prescore removes it at registration). */
  type: ElemType | 'zipmap';
  shape: Dim[] | null;
}

export type AttrValue =
  { i: number } | { f: number } | { s: string } | { ints: number[] } | { floats: number[] } | { strings: string[] };

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

export interface Initializer {
  name: string;
  type: 'float32' | 'float64' | 'int64';
  dims: number[];
  values: number[];
}

function valueInfo(v: ValueInfo) {
  if (v.type === 'zipmap') {
    const map = { mapType: { keyType: ELEM.int64, valueType: { tensorType: { elemType: ELEM.float32 } } } };
    return { name: v.name, type: { sequenceType: { elemType: map } } };
  }
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: ELEM[v.type],
        shape:
          v.shape === null ? undefined : { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  const utf8 = (x: string) => new TextEncoder().encode(x);
  if ('i' in value) return { name, type: T.INT, i: value.i };
  if ('f' in value) return { name, type: T.FLOAT, f: value.f };
  if ('s' in value) return { name, type: T.STRING, s: utf8(value.s) };
  if ('ints' in value) return { name, type: T.INTS, ints: value.ints };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.STRINGS, strings: value.strings.map(utf8) };
}

function initializer(t: Initializer) {
  const base = { name: t.name, dims: t.dims, dataType: ELEM[t.type] };
  if (t.type === 'float32') return { ...base, floatData: t.values };
  if (t.type === 'float64') return { ...base, doubleData: t.values };
  return { ...base, int64Data: t.values };
}

export function buildModel(spec: {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: NodeSpec[];
  initializers?: Initializer[];
  /** Types of intermediate tensors (graph.value_info). */
  valueInfo?: ValueInfo[];
  ml?: boolean;
  docString?: string;
}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'prescore',
    docString: spec.docString ?? '',
    opsetImport: [{ domain: '', version: 15 }, ...(spec.ml ? [{ domain: 'ai.onnx.ml', version: 3 }] : [])],
    graph: {
      name: 'graph',
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      valueInfo: (spec.valueInfo ?? []).map(valueInfo),
      initializer: (spec.initializers ?? []).map(initializer),
      node: spec.nodes.map((n, i) => ({
        opType: n.op,
        domain: n.domain ?? '',
        name: `${n.op}_${i}`,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attribute(k, v)),
      })),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
