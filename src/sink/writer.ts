import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { PoolClient } from '../db/pool.js';
import { copyIntoPartition } from '../db/sql/partitions.js';
import type { InferResult } from '../inference/protocol.js';
import type { OutputMapping } from '../models/output.js';
import { COPY_HEADER, COPY_TRAILER, PREDICTION_COLUMNS, encodePredictions, outputRejects } from './encode.js';

/**
 * Writes a chunk's predictions into its run's own table with one binary COPY, on the chunk's
 * transaction (the caller commits the rows together with the chunk's done-marker). Writes
 * wait for the socket to drain, so memory holds a batch or two, never the chunk.
 */
export class PredictionWriter {
  private readonly sink: ReturnType<typeof copyFrom>;
  private readonly runId: bigint;
  written = 0;

  constructor(
    client: PoolClient,
    runId: string,
    private readonly mapping: OutputMapping,
  ) {
    this.runId = BigInt(runId);
    this.sink = client.query(copyFrom(copyIntoPartition(runId, PREDICTION_COLUMNS)));
    this.sink.on('error', () => undefined); // surfaced by finish() or abort()
    this.sink.write(COPY_HEADER);
  }

  /**
   * Encodes one batch of model results for these keys and writes it. Rows whose stored output
   * is NaN or ±Infinity are not written: returned as rejects, with the key and the reason.
   */
  async write(
    keys: { offsets: Int32Array; data: Uint8Array },
    rows: number,
    result: InferResult,
  ): Promise<{ key: string; reason: string }[]> {
    const { skip, rejects } = outputRejects(keys, rows, result, this.mapping);
    const buf = encodePredictions(this.runId, keys, rows, this.mapping, result, skip);
    this.written += rows - rejects.length;
    if (!this.sink.write(buf)) await once(this.sink, 'drain');
    return rejects;
  }

  /** Ends the COPY; resolves when PostgreSQL has taken every row (not yet committed). */
  async finish(): Promise<void> {
    this.sink.end(COPY_TRAILER);
    await finished(this.sink);
  }

  /** Aborts the COPY (the server gets CopyFail) so the connection can roll back. */
  async abort(reason: Error): Promise<void> {
    if (this.sink.writableFinished) return;
    const closed = new Promise((resolve) => this.sink.once('close', resolve));
    this.sink.destroy(reason);
    await closed;
  }
}
