import { ParquetWriter, fileWriter } from 'hyparquet-writer';
import { withReadOnly, type Pool } from '../db/pool.js';
import type { RunRef } from '../db/sql/layers.js';
import { exportQuery } from '../db/sql/predictions.js';

/** Rows per FETCH and per row group: what one batch holds in memory. */
export const ROW_GROUP_ROWS = 50_000;

type Row = [key: string, score: number | null, label: string | null, outputs: number[] | null];

const SCHEMA = [
  { name: 'root', num_children: 4 },
  { name: 'key', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'score', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
  { name: 'label', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  // The standard three-level list: outputs (optional) > list (repeated) > element.
  { name: 'outputs', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'DOUBLE', repetition_type: 'REQUIRED' },
] as const;

/**
 * Writes a run's predictions (a layer's read through to its base) to `file` as Parquet (key,
 * score, label, outputs as a list of doubles), reading them with a server-side cursor
 * `ROW_GROUP_ROWS` at a time and writing each batch as one row group: memory holds one batch,
 * whatever the run's size. `metadata` goes in the file's key-value metadata.
 */
export async function exportParquet(pool: Pool, run: RunRef, file: string, metadata: Record<string, string>): Promise<number> {
  return withReadOnly(pool, async (client) => {
    await client.query(`DECLARE prescore_export NO SCROLL CURSOR FOR ${exportQuery(run, 'rows')}`);
    const writer = new ParquetWriter({
      writer: fileWriter(file),
      schema: SCHEMA.map((e) => ({ ...e })),
      kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      createdBy: 'prescore',
    });
    let total = 0;
    for (;;) {
      const { rows } = await client.query<Row>({ text: `FETCH ${ROW_GROUP_ROWS} FROM prescore_export`, rowMode: 'array' });
      if (rows.length === 0) break;
      await writer.write({
        columnData: [
          { name: 'key', data: rows.map((r) => r[0]) },
          { name: 'score', data: rows.map((r) => r[1]) },
          { name: 'label', data: rows.map((r) => r[2]) },
          { name: 'outputs', data: rows.map((r) => r[3]) },
        ],
        rowGroupSize: ROW_GROUP_ROWS,
      });
      total += rows.length;
    }
    await writer.finish();
    return total;
  });
}
