import type { ReaderStats } from '../profile/profile.js';
import { BadRowError } from '../errors.js';
import type { ResolvedFeature } from '../definitions/check.js';
import type { InputType } from '../models/signature.js';
import { valueProblem, type FeedType } from '../models/inputs.js';
import { TextColumn } from './text.js';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

export type FeatureArray = Float32Array | Float64Array | BigInt64Array;

export interface Reject {
  key: string | null;
  reason: string;
}

/** One decoded batch: good rows packed for the model, bad rows set aside with a reason. */
/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

export interface DecodedBatch {
  /** Rows read from the source in this batch (good + rejected). */
  read: number;
  /** Good rows. */
  rows: number;
  keyOffsets: Int32Array;
  keyData: Uint8Array;
  /** Row-major [rows, numeric features]: every feature but the text ones, in their order. */
  features: FeatureArray;
  /** One per text feature, in their order. */
  text: TextColumn[];
  rejects: Reject[];
}

/** Per feature, what the reader saw: every value read, NULLs (and NaN/±Infinity) apart. */
export type FeatureStats = ReaderStats;

export function emptyStats(): FeatureStats {
  return { count: 0, nulls: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity };
}

/**
 * Decodes PostgreSQL's binary COPY format (`key::text, f1::wire, ...`) straight into typed
 * arrays, batchRows good rows at a time. Rows may span the buffers the socket delivers.
 */
export class CopyDecoder {
  /** Feature fields per row; `width` of them numeric (the matrix), `texts` text. */
  private readonly fields: number;
  /** Numeric features per row: the width of a batch's feature matrix (text features are columns of their own). */
  readonly width: number;
  private readonly texts: number;
  /** Per field: its position in the matrix, or among the text columns. */
  private readonly slot: Int32Array;
  private readonly targets: (FeedType[] | null)[];
  private readonly textStart: Int32Array;
  private readonly textEnd: Int32Array;
  private readonly wires: Uint8Array; // 0 float4, 1 float8, 2 int8, 3 bool, 4 text
  private readonly scratch: Float64Array;
  private readonly scratchBig: BigInt64Array;
  private readonly scratchNull: Uint8Array;
  private leftover: Buffer | null = null;
  private headerDone = false;
  private ended = false;
  readonly stats: FeatureStats[];
  private batch!: DecodedBatch;
  private keyCap = 0;

  constructor(
    private readonly features: ResolvedFeature[],
    private readonly inputType: InputType,
    private readonly batchRows: number,
    private readonly failOnBadRow: boolean,
  ) {
    const codes = { float4: 0, float8: 1, int8: 2, bool: 3, text: 4 } as const;
    this.fields = features.length;
    this.wires = Uint8Array.from(features.map((f) => codes[f.wire]));
    let numeric = 0;
    let text = 0;
    this.slot = Int32Array.from(features.map((f) => (f.wire === 'text' ? text++ : numeric++)));
    this.width = numeric;
    this.texts = text;
    this.targets = features.map((f) => (f.targets && f.targets.length > 0 ? f.targets : null));
    this.textStart = new Int32Array(this.fields);
    this.textEnd = new Int32Array(this.fields);
    this.scratch = new Float64Array(this.fields);
    this.scratchBig = new BigInt64Array(this.fields);
    this.scratchNull = new Uint8Array(this.fields);
    this.stats = features.filter((f) => f.wire !== 'text').map(() => emptyStats());
    this.reset();
  }

  private reset(): void {
    const n = this.batchRows * this.width;
    this.keyCap = this.batchRows * 16;
    this.batch = {
      read: 0,
      rows: 0,
      keyOffsets: new Int32Array(this.batchRows + 1),
      keyData: new Uint8Array(this.keyCap),
      features:
        this.inputType === 'float32'
          ? new Float32Array(n)
          : this.inputType === 'float64'
            ? new Float64Array(n)
            : new BigInt64Array(n),
      text: Array.from({ length: this.texts }, () => new TextColumn(this.batchRows)),
      rejects: [],
    };
  }

  private take(): DecodedBatch {
    const b = this.batch;
    this.reset();
    return b;
  }

  /** Feeds bytes; returns the batches completed by them. */
  push(chunk: Buffer): DecodedBatch[] {
    const buf = this.leftover ? Buffer.concat([this.leftover, chunk]) : chunk;
    this.leftover = null;
    let pos = 0;
    if (!this.headerDone) {
      if (buf.length < 19) {
        this.leftover = buf;
        return [];
      }
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('COPY stream: not PostgreSQL binary COPY format');
      pos = 19 + buf.readInt32BE(15);
      this.headerDone = true;
    }
    const out: DecodedBatch[] = [];
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const end = buf.length;
    const width = this.width;
    const fields = this.fields;
    while (pos + 2 <= end) {
      const start = pos;
      const nfields = view.getInt16(pos);
      pos += 2;
      if (nfields === -1) {
        this.ended = true;
        pos = end;
        break;
      }
      if (nfields !== fields + 1) throw new Error(`COPY stream: expected ${fields + 1} fields, got ${nfields}`);
      // key
      if (pos + 4 > end) {
        pos = start;
        break;
      }
      const keyLen = view.getInt32(pos);
      pos += 4;
      if (keyLen > 0 && pos + keyLen > end) {
        pos = start;
        break;
      }
      const keyStart = pos;
      if (keyLen > 0) pos += keyLen;
      let bad: string | null = keyLen < 0 ? 'key is NULL' : null;
      let complete = true;
      for (let f = 0; f < fields; f++) {
        if (pos + 4 > end) {
          complete = false;
          break;
        }
        const len = view.getInt32(pos);
        pos += 4;
        this.scratchNull[f] = len < 0 ? 1 : 0;
        if (len < 0) {
          if (bad === null) bad = `NULL in column ${this.features[f]!.name}`;
          continue;
        }
        if (pos + len > end) {
          complete = false;
          break;
        }
        const wire = this.wires[f]!;
        if (wire === 4) {
          this.textStart[f] = pos;
          this.textEnd[f] = pos + len;
        } else if (wire === 3) {
          const v = buf[pos]!;
          this.scratchBig[f] = BigInt(v);
          this.scratch[f] = v;
        } else if (wire === 2) {
          const v = view.getBigInt64(pos);
          this.scratchBig[f] = v;
          this.scratch[f] = Number(v);
        } else {
          const v = wire === 0 ? view.getFloat32(pos) : view.getFloat64(pos);
          this.scratch[f] = v;
          if (bad === null && !Number.isFinite(v)) {
            bad = `${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} in column ${this.features[f]!.name}`;
          } else if (bad === null && wire === 1 && this.inputType === 'float32' && Math.abs(v) > FLOAT32_MAX) {
            // A double the float32 model cannot take: the cast would make it ±Infinity.
            bad = `${this.features[f]!.name} = ${v} overflows float32`;
          }
        }
        pos += len;
      }
      if (!complete) {
        pos = start;
        break;
      }
      // The row is complete: commit it.
      const b = this.batch;
      b.read++;
      this.accumulate();
      if (bad === null) bad = this.checkTargets();
      if (bad === null && this.inputType === 'int64') bad = this.checkIntegral();
      if (bad !== null) {
        const key = keyLen < 0 ? null : buf.toString('utf8', keyStart, keyStart + keyLen);
        if (this.failOnBadRow) throw new BadRowError(key, bad);
        b.rejects.push({ key, reason: bad });
      } else {
        const r = b.rows;
        const off = b.keyOffsets[r]!;
        if (off + keyLen > this.keyCap) this.growKeys(off + keyLen);
        buf.copy(b.keyData, off, keyStart, keyStart + keyLen);
        b.keyOffsets[r + 1] = off + keyLen;
        const base = r * width;
        const feats = b.features;
        if (fields === width) {
          if (feats instanceof BigInt64Array) {
            for (let f = 0; f < width; f++)
              feats[base + f] = this.wires[f]! >= 2 ? this.scratchBig[f]! : BigInt(this.scratch[f]!);
          } else {
            for (let f = 0; f < width; f++) feats[base + f] = this.scratch[f]!;
          }
        } else {
          for (let f = 0; f < fields; f++) {
            const wire = this.wires[f]!;
            const at = this.slot[f]!;
            if (wire === 4) b.text[at]!.push(buf, this.textStart[f]!, this.textEnd[f]!);
            else if (feats instanceof BigInt64Array)
              feats[base + at] = wire >= 2 ? this.scratchBig[f]! : BigInt(this.scratch[f]!);
            else feats[base + at] = this.scratch[f]!;
          }
        }
        b.rows = r + 1;
      }
      if (b.rows === this.batchRows) out.push(this.take());
    }
    if (pos < end) this.leftover = Buffer.from(buf.subarray(pos));
    return out;
  }

  /** The dtypes of the inputs each column feeds (models/inputs.ts): a value that does not fit is a bad row. */
  private checkTargets(): string | null {
    for (let f = 0; f < this.fields; f++) {
      const targets = this.targets[f];
      if (!targets) continue;
      for (const t of targets) {
        const problem = valueProblem(this.scratch[f]!, t, this.features[f]!.name, this.inputType);
        if (problem !== null) return problem;
      }
    }
    return null;
  }

  private checkIntegral(): string | null {
    for (let f = 0; f < this.fields; f++) {
      if ((this.wires[f] === 0 || this.wires[f] === 1) && !Number.isInteger(this.scratch[f]!)) {
        return `value ${this.scratch[f]} in column ${this.features[f]!.name} is not an integer (the model takes int64)`;
      }
    }
    return null;
  }

  private accumulate(): void {
    for (let f = 0; f < this.fields; f++) {
      if (this.wires[f] === 4) continue;
      const s = this.stats[this.slot[f]!]!;
      if (this.scratchNull[f] === 1) {
        s.nulls++;
        continue;
      }
      const v = this.scratch[f]!;
      if (!Number.isFinite(v)) {
        s.nulls++; // NaN and ±Infinity are as unusable as NULL: both count against the column
        continue;
      }
      s.count++;
      s.sum += v;
      s.sumSq += v * v;
      if (v < s.min) s.min = v;
      if (v > s.max) s.max = v;
    }
  }

  private growKeys(need: number): void {
    const b = this.batch;
    this.keyCap = Math.max(need, this.keyCap * 2);
    const next = new Uint8Array(this.keyCap);
    next.set(b.keyData.subarray(0, b.keyOffsets[b.rows]!));
    b.keyData = next;
  }

  /** The last, partial batch; throws if the stream did not end with the COPY trailer. */
  finish(): DecodedBatch | null {
    if (!this.ended) throw new Error('COPY stream ended early (no trailer): the connection was lost mid-read');
    return this.batch.read > 0 ? this.take() : null;
  }
}
