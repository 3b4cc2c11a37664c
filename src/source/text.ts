/**
 * A text feature column of one batch, as Arrow's Utf8 layout: row i is
 * data[offsets[i] .. offsets[i + 1]). The reader copies each value's UTF-8 bytes straight from
 * the COPY buffer, so the Arrow vector needs no conversion.
 */
export class TextColumn {
  offsets: Int32Array;
  data: Uint8Array;
  private rows = 0;

  constructor(capacityRows: number) {
    this.offsets = new Int32Array(capacityRows + 1);
    this.data = new Uint8Array(capacityRows * 8);
  }

  push(src: Uint8Array, start: number, end: number): void {
    const at = this.offsets[this.rows]!;
    const need = at + (end - start);
    if (need > this.data.length) {
      const next = new Uint8Array(Math.max(need, this.data.length * 2));
      next.set(this.data.subarray(0, at));
      this.data = next;
    }
    this.data.set(src.subarray(start, end), at);
    this.offsets[++this.rows] = need;
  }
}

const utf8 = new TextDecoder();

/** The strings of rows [from, to) of a Utf8 column: what an ONNX string tensor takes. */
export function decodeStrings(offsets: Int32Array, data: Uint8Array, from: number, to: number): string[] {
  const out = new Array<string>(to - from);
  for (let i = from; i < to; i++) out[i - from] = utf8.decode(data.subarray(offsets[i]!, offsets[i + 1]!));
  return out;
}
