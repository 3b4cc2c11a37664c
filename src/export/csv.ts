import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import { withClient, type Pool } from '../db/pool.js';
import { exportQuery } from '../db/sql/predictions.js';

/**
 * Streams a run's predictions into `file` as CSV (RFC 4180, a header line) with PostgreSQL's
 * own COPY writer: fields with a comma, a quote or a line break are quoted, quotes doubled;
 * NULL is an empty field, an empty label `""`; scores in the shortest text that reads back to
 * the same double; outputs a JSON array. The rows written; memory stays at the stream's buffers, whatever the size.
 */
export async function exportCsv(pool: Pool, runId: string, file: string): Promise<number> {
  return withClient(pool, async (client) => {
    const copy = client.query(copyTo(`COPY (${exportQuery(runId, 'csv')}) TO STDOUT (FORMAT csv, HEADER true)`));
    await pipeline(copy, fs.createWriteStream(file));
    return copy.rowCount;
  });
}
