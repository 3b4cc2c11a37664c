import fs from 'node:fs';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { Field, Float64, List, RecordBatchFileWriter, Table, Utf8, vectorFromArray } from 'apache-arrow';
import { withReadOnly, type Pool, type PoolClient } from '../db/pool.js';
import { runRef } from '../db/sql/layers.js';
import { exportQuery } from '../db/sql/predictions.js';
import { bundleRejectsQuery } from '../db/sql/rejects.js';
import { runPlan } from '../db/sql/runs.js';
import { loadPointer, newestPublishedDates } from '../db/sql/serving.js';
import type { ResolvedJob } from '../definitions/check.js';
import { checkDate } from '../dates.js';
import { InputError } from '../errors.js';
import { championOnlyNote } from '../export/export.js';
import { loadModelBytes } from '../models/registry.js';
import {
  BUNDLE_FORMAT,
  BUNDLE_VERSION,
  MANIFEST,
  MODEL_FILE,
  PREDICTIONS_FILE,
  REJECTS_FILE,
  hashFile,
  manifestText,
  sha256,
  type BundleFile,
  type Manifest,
} from './manifest.js';

/** Rows per FETCH and per Arrow record batch: what the export holds in memory at once. */
export const BATCH_ROWS = 50_000;

export interface BundleResult {
  runId: string;
  date: string;
  rows: number;
  rejected: number;
  dir: string;
  /** sha256 of manifest.json: pin it (`openBundle(dir, { sha256 })`) to refuse any other bundle. */
  manifestSha256: string;
  /** What the bundle cannot do, for the operator (e.g. scoring a job whose model takes several inputs). */
  notes: string[];
}

/**
 * What a bundle of this run leaves out, said at export: it holds the champion's predictions
 * and scores with the champion's model, through one plain tensor.
 */
function bundleNotes(job: ResolvedJob): string[] {
  const notes: string[] = [];
  if (job.feeds) {
    notes.push(
      `job ${job.name} maps its features to several or non-float inputs (inputs, text, int32/bool/float16): the bundle answers lookups, ` +
        'but its score() and POST /v1/score refuse (they score only single-input float32/float64/int64 models)',
    );
  }
  notes.push(...championOnlyNote(job, 'the bundle'));
  return notes;
}

type Row = [key: string, score: number | null, label: string | null, outputs: number[] | null];

function predictionTable(rows: Row[]): Table {
  return new Table({
    key: vectorFromArray(
      rows.map((r) => r[0]),
      new Utf8(),
    ),
    score: vectorFromArray(
      rows.map((r) => r[1]),
      new Float64(),
    ),
    label: vectorFromArray(
      rows.map((r) => r[2]),
      new Utf8(),
    ),
    outputs: vectorFromArray(
      rows.map((r) => r[3]),
      new List(new Field('item', new Float64(), false)),
    ),
  });
}

/** Streams a query's rows through a cursor into an Arrow IPC file, one record batch per FETCH. */
async function writeArrow<R>(client: PoolClient, query: string, file: string, table: (rows: R[]) => Table): Promise<number> {
  const cursor = `prescore_bundle_${path.basename(file, '.arrow')}`;
  await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR ${query}`);
  const writer = new RecordBatchFileWriter();
  const out = fs.createWriteStream(file);
  const piped = writer.toNodeStream().pipe(out);
  let total = 0;
  for (;;) {
    const res = await client.query({ text: `FETCH ${BATCH_ROWS} FROM ${cursor}`, rowMode: 'array' });
    const rows = res.rows as unknown as R[];
    // An empty run still writes its schema.
    if (rows.length === 0 && total > 0) break;
    writer.write(table(rows));
    total += rows.length;
    if (rows.length === 0) break;
    // Let the file catch up before the next batch: memory holds about one batch.
    if (out.writableNeedDrain) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await client.query(`CLOSE ${cursor}`);
  writer.finish();
  await finished(piped);
  return total;
}

/**
 * `prescore export <job> [--date D] --out DIR`: the run that serves (job, date) (without a
 * date: the job's newest published date) as a bundle an app serves or reads with no database:
 * predictions.arrow (key, score, label, outputs, in byte order of the key), rejects.arrow
 * (key, reason), model.onnx (the exact bytes the run scored with) and manifest.json. Read in
 * one repeatable-read snapshot, so a publish or retention meanwhile changes nothing (a layered
 * run's predictions are read through to its base, so the bundle holds every row); written
 * beside DIR and renamed into place whole.
 */
export async function exportBundle(pool: Pool, p: { job: string; date?: string; dir: string }): Promise<BundleResult> {
  let date = p.date;
  if (date === undefined) {
    date = (await newestPublishedDates(pool, [p.job])).get(p.job);
    if (!date)
      throw new InputError(`job ${p.job} has no published run: nothing to export (see prescore runs list --job ${p.job})`);
  } else checkDate(date);
  const pointer = await loadPointer(pool, p.job, date);
  if (!pointer) {
    throw new InputError(
      `job ${p.job} has no published run for ${date}: nothing to export (see prescore runs list --job ${p.job})`,
    );
  }
  const plan = await runPlan<ResolvedJob>(pool, pointer.runId);
  if (!plan) throw new InputError(`run ${pointer.runId} of job ${p.job} is gone (dropped by retention); export again`);
  const job = plan.spec;
  const bytes = await loadModelBytes(pool, job.model.name, job.model.version);
  if (sha256(bytes) !== job.model.sha256) {
    throw new InputError(
      `model ${job.model.name} v${job.model.version} in the registry is not the one run ${pointer.runId} scored with`,
    );
  }

  const dir = path.resolve(p.dir);
  if (
    fs.existsSync(dir) &&
    (!fs.statSync(dir).isDirectory() || (fs.readdirSync(dir).length > 0 && !fs.existsSync(path.join(dir, MANIFEST))))
  ) {
    throw new InputError(
      `--out ${p.dir} exists and is not a bundle: name a new directory (or an older bundle, which is replaced)`,
    );
  }
  const partial = path.join(path.dirname(dir), `.${path.basename(dir)}.${process.pid}.partial`);
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(partial, { recursive: true });
  try {
    const counts = await withReadOnly(pool, async (client) => {
      await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const rows = await writeArrow<Row>(
        client,
        exportQuery(await runRef(client, pointer.runId), 'rows'),
        path.join(partial, PREDICTIONS_FILE),
        predictionTable,
      );
      const rejected = await writeArrow<[string, string]>(
        client,
        bundleRejectsQuery(pointer.runId),
        path.join(partial, REJECTS_FILE),
        (r) =>
          new Table({
            key: vectorFromArray(
              r.map((x) => x[0]),
              new Utf8(),
            ),
            reason: vectorFromArray(
              r.map((x) => x[1]),
              new Utf8(),
            ),
          }),
      );
      return { rows, rejected };
    });
    fs.writeFileSync(path.join(partial, MODEL_FILE), bytes);
    const files: Record<string, BundleFile> = {};
    for (const name of [PREDICTIONS_FILE, REJECTS_FILE, MODEL_FILE]) files[name] = await hashFile(path.join(partial, name));
    const manifest: Omit<Manifest, 'manifestSha256'> = {
      format: BUNDLE_FORMAT,
      formatVersion: BUNDLE_VERSION,
      job: p.job,
      date,
      runId: pointer.runId,
      publishedAt: pointer.publishedAt.toISOString(),
      model: { name: job.model.name, version: job.model.version, sha256: job.model.sha256 },
      input: job.input,
      features: job.features.map((f) => f.name),
      output: (job.spec.output as Record<string, string> | undefined) ?? null,
      mapping: job.mapping,
      ...(job.feeds ? { feeds: job.feeds } : {}),
      rows: counts.rows,
      rejected: counts.rejected,
      createdAt: new Date().toISOString(),
      files,
    };
    const text = manifestText(manifest);
    fs.writeFileSync(path.join(partial, MANIFEST), text);
    // An older bundle in the way is moved aside, the new one renamed in, the old one removed.
    const old = `${partial}.old`;
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(partial, dir);
    fs.rmSync(old, { recursive: true, force: true });
    return {
      runId: pointer.runId,
      date,
      rows: counts.rows,
      rejected: counts.rejected,
      dir,
      manifestSha256: sha256(text),
      notes: bundleNotes(job),
    };
  } catch (err) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}
