import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { ResolvedFeature } from '../src/definitions/check.js';
import { featureValues, keyColumn, toRecordBatch } from '../src/source/arrow.js';
import { CopyDecoder, type DecodedBatch } from '../src/source/decode.js';
import { createTestDb, type TestDb } from './helpers.js';

async function copyBytes(url: string, sql: string): Promise<Buffer> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const parts: Buffer[] = [];
  for await (const b of client.query(copyTo(sql)) as AsyncIterable<Buffer>) parts.push(b);
  await client.end();
  return Buffer.concat(parts);
}

const FEATURES: ResolvedFeature[] = [
  { name: 'a', pgType: 'float4', wire: 'float4' },
  { name: 'b', pgType: 'float8', wire: 'float8' },
];

/** Binary COPY written by PostgreSQL, decoded, and compared with what PostgreSQL says. */
describe('binary COPY decoder -> Arrow record batch', () => {
  let db: TestDb;
  let bytes: Buffer;
  const SQL = `COPY (SELECT k::text, a::float4, b::float8 FROM (VALUES
      ('1', 1.5, 2.25), (NULL, 0, 0), ('κλειδί-🗝', -3.25, 1e300), ('4', NULL, 1), ('5', 'NaN', 1), ('6', 7, '-Infinity'), ('7', 8, 9)
    ) AS t(k, a, b)) TO STDOUT (FORMAT binary)`;
  before(async () => {
    db = await createTestDb('decode');
    bytes = await copyBytes(db.url, SQL);
  });
  after(async () => db.drop());

  function decodeInPieces(size: number, batchRows: number): DecodedBatch[] {
    const d = new CopyDecoder(FEATURES, 'float64', batchRows, false);
    const out: DecodedBatch[] = [];
    for (let i = 0; i < bytes.length; i += size) out.push(...d.push(bytes.subarray(i, i + size)));
    const last = d.finish();
    if (last) out.push(last);
    return out;
  }

  test('decodes every row the same whether bytes arrive whole or one at a time', () => {
    for (const size of [bytes.length, 1, 3, 7, 64]) {
      const batches = decodeInPieces(size, 2);
      const keys: string[] = [];
      const values: number[] = [];
      const rejects = batches.flatMap((b) => b.rejects);
      for (const b of batches) {
        const rb = toRecordBatch(b, 2, 'float64');
        assert.equal(rb.numRows, b.rows);
        const { offsets, data } = keyColumn(rb);
        for (let i = 0; i < rb.numRows; i++) keys.push(Buffer.from(data.subarray(offsets[i], offsets[i + 1])).toString('utf8'));
        values.push(...(featureValues(rb) as Float64Array));
        assert.deepEqual(rb.getChild('key')!.toArray().length, rb.numRows);
      }
      assert.deepEqual(keys, ['1', 'κλειδί-🗝', '7'], `piece size ${size}`);
      assert.deepEqual(values, [1.5, 2.25, -3.25, 1e300, 8, 9]);
      assert.deepEqual(rejects, [
        { key: null, reason: 'key is NULL' },
        { key: '4', reason: 'NULL in column a' },
        { key: '5', reason: 'NaN in column a' },
        { key: '6', reason: '-Infinity in column b' },
      ]);
      assert.equal(
        batches.reduce((a, b) => a + b.read, 0),
        7,
      );
    }
  });

  test('the Arrow columns read back through the Arrow API', () => {
    const [first] = decodeInPieces(bytes.length, 100);
    const rb = toRecordBatch(first!, 2, 'float64');
    assert.deepEqual([...rb.getChild('key')!].map(String), ['1', 'κλειδί-🗝', '7']);
    const list = rb.getChild('features')!;
    assert.deepEqual([...list.get(0)!], [1.5, 2.25]);
    assert.deepEqual([...list.get(2)!], [8, 9]);
  });

  test('a stream cut short (no trailer) is an error, not a short chunk', () => {
    const d = new CopyDecoder(FEATURES, 'float64', 100, false);
    d.push(bytes.subarray(0, bytes.length - 2));
    assert.throws(() => d.finish(), /COPY stream ended early/);
  });

  test('onBadRow "fail" stops at the first bad row, naming key and column', () => {
    const d = new CopyDecoder(FEATURES, 'float64', 100, true);
    assert.throws(() => d.push(bytes), /key NULL: key is NULL/);
  });
});
