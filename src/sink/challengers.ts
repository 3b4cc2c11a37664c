import { finished } from 'node:stream/promises';
import { once } from 'node:events';
import { from as copyFrom } from 'pg-copy-streams';
import type { PoolClient } from '../db/pool.js';
import { copyIntoChallengerPartition } from '../db/sql/partitions.js';
import type { InferResult } from '../inference/protocol.js';
import type { OutputMapping } from '../models/output.js';
import { CHALLENGER_COLUMNS, COPY_HEADER, COPY_TRAILER, encodePredictions, outputRejects } from './encode.js';

/** A challenger's prediction that was not stored: its output was NaN or infinite. */
export interface ChallengerReject {
  slot: number;
  key: string;
  reason: string;
}

/**
 * A chunk's challenger predictions, for the run's challenger table. The chunk's connection is
 * busy with the champion's COPY while the chunk is scored (one COPY at a time per connection,
 * and both must commit in one transaction), so challenger rows are encoded as they come and
 * held until the champion's COPY ends, then loaded with one COPY of their own. Memory: about
 * 50 bytes per row and challenger plus outputs, so bounded by chunkRows, never by the table.
 */
export class ChallengerWriter {
  private readonly runId: bigint;
  private readonly encoded: Buffer[] = [];
  /** Rows stored per challenger, by slot. */
  readonly written = new Map<number, number>();
  private copy: ReturnType<typeof copyFrom> | undefined;

  constructor(
    private readonly runIdText: string,
    slots: number[],
  ) {
    this.runId = BigInt(runIdText);
    for (const s of slots) this.written.set(s, 0);
  }

  /** Encodes one batch of one challenger's results; returns the rows it could not score. */
  add(
    slot: number,
    mapping: OutputMapping,
    keys: { offsets: Int32Array; data: Uint8Array },
    rows: number,
    result: InferResult,
  ): ChallengerReject[] {
    const { skip, rejects: own } = outputRejects(keys, rows, result, mapping);
    const rejects: ChallengerReject[] = own.map((r) => ({ slot, ...r }));
    this.encoded.push(encodePredictions(this.runId, keys, rows, mapping, result, skip, slot));
    this.written.set(slot, (this.written.get(slot) ?? 0) + rows - rejects.length);
    return rejects;
  }

  /** Loads everything added with one binary COPY on the chunk's transaction (not committed). */
  async flush(client: PoolClient): Promise<void> {
    const sink = client.query(copyFrom(copyIntoChallengerPartition(this.runIdText, CHALLENGER_COLUMNS)));
    this.copy = sink;
    sink.on('error', () => undefined); // surfaced by finished()
    sink.write(COPY_HEADER);
    while (this.encoded.length > 0) {
      if (!sink.write(this.encoded.shift()!)) await once(sink, 'drain');
    }
    sink.end(COPY_TRAILER);
    await finished(sink);
  }

  /** Aborts a COPY in flight (the server gets CopyFail) so the connection can roll back. */
  async abort(reason: Error): Promise<void> {
    const sink = this.copy;
    if (!sink || sink.writableFinished) return;
    const closed = new Promise((resolve) => sink.once('close', resolve));
    sink.destroy(reason);
    await closed;
  }
}
