import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int64,
  RecordBatch,
  Schema,
  Struct,
  Utf8,
  makeData,
  type DataType,
} from 'apache-arrow';
import type { InputType } from '../models/signature.js';
import type { DecodedBatch, FeatureArray } from './decode.js';

function elementType(type: InputType): DataType {
  return type === 'float32' ? new Float32() : type === 'float64' ? new Float64() : new Int64();
}

/**
 * Wraps a decoded batch as an Arrow RecordBatch {key: Utf8, features: FixedSizeList<T>[width]}
 * without copying: the Utf8 column points at the decoder's key bytes and the list's child
 * at the typed array that becomes the ONNX tensor.
 */
export function toRecordBatch(decoded: DecodedBatch, width: number, type: InputType): RecordBatch {
  const rows = decoded.rows;
  const keyType = new Utf8();
  const keys = makeData({
    type: keyType,
    length: rows,
    nullCount: 0,
    valueOffsets: decoded.keyOffsets.subarray(0, rows + 1),
    data: decoded.keyData.subarray(0, decoded.keyOffsets[rows]),
  });
  const itemField = new Field('item', elementType(type), false);
  const listType = new FixedSizeList(width, itemField);
  const values = makeData({
    type: elementType(type),
    length: rows * width,
    nullCount: 0,
    data: decoded.features.subarray(0, rows * width),
  } as never);
  const features = makeData({ type: listType, length: rows, nullCount: 0, child: values });
  const fields = [new Field('key', keyType, false), new Field('features', listType, false)];
  // Text features (models/inputs.ts), one Utf8 column each, after the numeric matrix.
  const texts = decoded.text.map((t, i) => {
    fields.push(new Field(`text${i}`, new Utf8(), false));
    return makeData({
      type: new Utf8(),
      length: rows,
      nullCount: 0,
      valueOffsets: t.offsets.subarray(0, rows + 1),
      data: t.data.subarray(0, t.offsets[rows]),
    });
  });
  const struct = makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: [keys, features, ...texts] });
  return new RecordBatch(new Schema(fields), struct);
}

/** The feature values of a batch, row-major: the buffer the ONNX tensor is built on. */
export function featureValues(batch: RecordBatch): FeatureArray {
  const list = batch.data.children[1]!;
  return list.children[0]!.values as FeatureArray;
}

/** The text feature columns of a batch (Utf8 offsets and bytes, copied: they go to an inference thread); [] when none. */
export function textColumns(batch: RecordBatch): { offsets: Int32Array; data: Uint8Array }[] {
  return batch.data.children.slice(2).map((c) => ({
    offsets: (c.valueOffsets as Int32Array).slice(0, c.length + 1),
    data: (c.values as Uint8Array).slice(),
  }));
}

/** Key bytes of a batch: offsets into UTF-8 data. */
export function keyColumn(batch: RecordBatch): { offsets: Int32Array; data: Uint8Array } {
  const keys = batch.data.children[0]!;
  return { offsets: keys.valueOffsets as Int32Array, data: keys.values as Uint8Array };
}
