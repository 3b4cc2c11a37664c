import { to as copyTo } from 'pg-copy-streams';
import { withReadOnly, type Pool } from '../db/pool.js';
import { parseQualifiedName, quoteIdent, quoteQualified } from '../db/ident.js';
import { checkDate } from '../dates.js';
import type { ResolvedJob } from '../definitions/check.js';
import { InputError } from '../errors.js';
import { CopyDecoder, type DecodedBatch } from '../source/decode.js';
import { fromClause, sourceQueryProblem, sourceStatement } from '../source/statement.js';
import { ChunkProfiler, type ColumnProfile } from './profile.js';

export interface TrainingSource {
  /** A table with the job's feature columns (`table` or `schema.table`). */
  table?: string;
  /** Or a SELECT with those columns (one statement, run read-only). */
  query?: string;
  /** With a table: only the rows of this date in the job's partition column. */
  date?: string;
}

/**
 * Profiles the rows a model was trained on, the way a run profiles what it scores (the job's
 * features, the same grid): a baseline for drift, as Vertex AI and SageMaker Model Monitor
 * define one. Outputs are not profiled (there are no stored predictions for training rows).
 */
export async function profileTrainingData(
  pool: Pool,
  job: ResolvedJob,
  source: TrainingSource,
): Promise<{ rows: number; columns: ColumnProfile[]; describe: string }> {
  if ((source.table === undefined) === (source.query === undefined))
    throw new InputError('give exactly one of --table or --query');
  if (source.query !== undefined && source.date !== undefined)
    throw new InputError('--date goes with --table (filter in your --query instead)');
  const table = source.table === undefined ? null : parseQualifiedName(source.table, '--table');
  const from = fromClause({ query: source.query ?? null, table });
  const where =
    source.date === undefined
      ? ''
      : ` WHERE ${quoteIdent(job.partition.name)}::date = '${checkDate(source.date, '--date')}'::date`;
  const cols = job.features.map((f) => `${quoteIdent(f.name)}::${f.wire}`);
  const select = `SELECT ''::text, ${cols.join(', ')} FROM ${from}${where}`;
  const describe = table ? `table ${quoteQualified(table)}${source.date ? ` on ${source.date}` : ''}` : 'query';
  return withReadOnly(pool, async (client) => {
    try {
      // One statement, checked over the extended protocol before COPY (simple protocol) runs it.
      await client.query(sourceStatement(`SELECT * FROM (${select}\n) AS prescore_check LIMIT 0`));
    } catch (err) {
      const message = (err as Error).message;
      throw new InputError(
        source.query !== undefined ? sourceQueryProblem(err, '--query') : `--table ${source.table}: ${message}`,
        { cause: err },
      );
    }
    const decoder = new CopyDecoder(job.features, job.input.type, 8192, false);
    const numeric = job.features.filter((f) => f.wire !== 'text');
    const profiler = new ChunkProfiler(
      numeric.map((f) => f.name),
      {},
    );
    let rows = 0;
    const take = (d: DecodedBatch) => {
      rows += d.read;
      profiler.addFeatures(d.features.subarray(0, d.rows * numeric.length), d.rows);
    };
    const stream = client.query(copyTo(`COPY (${select}\n) TO STDOUT (FORMAT binary)`));
    for await (const buf of stream as AsyncIterable<Buffer>) for (const d of decoder.push(buf)) take(d);
    const last = decoder.finish();
    if (last) take(last);
    return { rows, columns: profiler.finish(decoder.stats), describe };
  });
}
