import { to as copyTo } from 'pg-copy-streams';
import { checkDate } from '../dates.js';
import type { PoolClient } from '../db/pool.js';
import type { ResolvedJob } from '../definitions/check.js';
import { CopyDecoder, type FeatureArray, type Reject } from './decode.js';
import { chunkCopySql, keysSelectSql } from './sql.js';
import { sourceStatement } from './statement.js';

/** Rows of a few keys of one date, decoded as a chunk decodes them. */
export interface KeyRows {
  /** Good rows: their keys (the key column as text) and features, row-major in the model's input type. */
  keys: string[];
  features: FeatureArray;
  /** Rows a run would reject, with the reason it would record. */
  rejects: Reject[];
}

const INTEGER_RANGES: Record<string, bigint> = { smallint: 32767n, integer: 2147483647n, bigint: 9223372036854775807n };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NUMERIC = /^-?(\d+)(?:\.(\d+))?$/;

/**
 * Whether `key` is how PostgreSQL writes a value of the key's type as text (`key::text`, what
 * runs store and the API matches exactly). Only such keys can name a row, and only they go
 * into the cast `ARRAY[...]::<type>[]`, which an 'abc' (or a bigint out of range) would fail
 * for every key of the query.
 */
export function keyFits(pgType: string, key: string): boolean {
  const max = INTEGER_RANGES[pgType];
  if (max !== undefined) {
    if (!/^(0|-?[1-9]\d{0,18})$/.test(key)) return false;
    const v = BigInt(key);
    return v <= max && v >= -max - 1n;
  }
  if (pgType === 'uuid') return UUID.test(key);
  if (pgType === 'date') {
    try {
      checkDate(key);
      return true;
    } catch {
      return false;
    }
  }
  if (pgType === 'numeric' || pgType.startsWith('numeric(')) {
    const m = NUMERIC.exec(key);
    if (!m) return false;
    // numeric(p, s) refuses (rather than rounds) a value with more than p - s integer digits.
    const t = /^numeric\((\d+)(?:,(\d+))?\)$/.exec(pgType);
    return !t || m[1]!.replace(/^0+(?=\d)/, '').length <= Number(t[1]) - Number(t[2] ?? 0);
  }
  // text, varchar(n), char(n): any text casts (an explicit cast to varchar(n) truncates; the
  // exact match on the row's key text drops what it would find).
  return true;
}

/**
 * Reads the rows of `keys` (each fitting the key's type) on `date` from the job's source with
 * binary COPY, through the chunk reader's decoder: the same casts, the same float32 rounding,
 * the same reasons for a NULL, NaN or overflowing feature. `client` is in a READ ONLY
 * transaction; for a query source, `checked` says its SELECT was already refused or accepted
 * once as a single statement over the extended protocol (COPY uses the simple one).
 */
export async function readKeys(
  client: PoolClient,
  job: ResolvedJob,
  date: string,
  keys: readonly string[],
  checked: boolean,
): Promise<KeyRows> {
  const select = keysSelectSql(job, date, keys);
  if (job.query !== null && !checked) {
    await client.query(sourceStatement(`SELECT * FROM (${select}\n) AS prescore_check LIMIT 0`));
  }
  const decoder = new CopyDecoder(job.features, job.input.type, Math.max(1, keys.length), false);
  const stream = client.query(copyTo(chunkCopySql(select)));
  const batches = [];
  try {
    for await (const buf of stream as AsyncIterable<Buffer>) batches.push(...decoder.push(buf));
  } catch (err) {
    stream.destroy();
    throw err;
  }
  const last = decoder.finish();
  if (last) batches.push(last);
  // At most keys.length rows (the key is unique per date): one batch, or none.
  const b = batches[0];
  const width = decoder.width;
  if (!b) return { keys: [], features: new Float32Array(0), rejects: [] };
  const text = Buffer.from(b.keyData.buffer, b.keyData.byteOffset, b.keyData.byteLength);
  const found = new Array<string>(b.rows);
  for (let r = 0; r < b.rows; r++) found[r] = text.toString('utf8', b.keyOffsets[r]!, b.keyOffsets[r + 1]!);
  return { keys: found, features: b.features.subarray(0, b.rows * width), rejects: b.rejects };
}
