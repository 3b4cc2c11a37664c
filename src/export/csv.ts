import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import { withClient, type Pool } from '../db/pool.js';
import type { RunRef } from '../db/sql/layers.js';
import { exportQuery } from '../db/sql/predictions.js';

/**
 * Streams a run's predictions (a layer's read through to its base, in the one snapshot of the
 * COPY) into `file` as CSV (RFC 4180, a header line) with PostgreSQL's own COPY writer: fields
 * with a comma, a quote or a line break are quoted, quotes doubled; NULL is an empty field, an
 * empty label `""`; scores in the shortest text that reads back to the same double; outputs a
 * JSON array. The rows written; memory stays at the stream's buffers, whatever the size.
 */
export async function exportCsv(pool: Pool, run: RunRef, file: string): Promise<number> {
  return withClient(pool, async (client) => {
    const copy = client.query(copyTo(`COPY (${exportQuery(run, 'csv')}) TO STDOUT (FORMAT csv, HEADER true)`));
    await pipeline(copy, fs.createWriteStream(file));
    return copy.rowCount;
  });
}
