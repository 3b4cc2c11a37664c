import type { Pool, PoolClient } from '../db/pool.js';
import { quoteIdent } from '../db/ident.js';
import {
  carryOver,
  changedBounds,
  createChanged,
  createHashes,
  deltaHashes,
  deltaSince,
  findBaseRun,
  insertCarriedChunk,
  layerSize,
  lockBase,
  recordIncremental,
  watermark,
  type BaseRun,
} from '../db/sql/carry.js';
import { insertChunks } from '../db/sql/chunks.js';
import { runProfile } from '../db/sql/profiles.js';
import { addRunModelCounts } from '../db/sql/run-models.js';
import type { ResolvedJob } from '../definitions/check.js';
import { NoRowsError } from '../errors.js';
import { encodeProfiles } from '../profile/codec.js';
import type { ColumnProfile } from '../profile/profile.js';
import type { ChunkPlan } from '../source/plan.js';
import { dateFilter } from '../source/sql.js';
import { fromClause } from '../source/statement.js';

/**
 * Incremental runs. A job with `incremental` scores, per run, only the rows that changed since
 * its BASE run, the serving run of the newest published date on or before the run's date (a
 * rerun of a date starts from that date's serving run; after a rollback, from the run rolled
 * back to), and carries every other row over from the base run's tables in its plan
 * transaction. "Changed" is: a key new since the base run (not among its predictions or
 * rejects), a row whose `changedSince` column is at or after the base run's watermark (minus
 * `lookbackSeconds`) or NULL, or (hash mode) whose feature hash differs from the one the base
 * run stored; rows with a NULL key are always scored. Keys of the base run gone from the
 * source are not carried. Anything else that changes scores (a model version of the champion
 * or a challenger, features, output mapping, source, key, onBadRow, the incremental setting)
 * makes a full run, as do `--full`, a first run, and a base run whose tables were dropped.
 */
export interface IncrementalDecision {
  mode: 'changedSince' | 'hash';
  /** The base run to carry from; undefined: a full run, for `reason`. */
  base?: BaseRun<ResolvedJob>;
  reason: string | null;
  /** The source has rows with a NULL key (scored by every run, never carried). */
  nullKeys: boolean;
}

/**
 * A layer holds its changed rows and masks (db/sql/layers.ts); past this share of its root's
 * rows, a run copies all its rows instead. Reads through a layer cost one more index descent,
 * so the share bounds the space a chain of layers keeps beside its root, not read speed.
 */
export const LAYER_SHARE = 0.2;

/** Before the plan transaction: full or incremental, and from which run. */
export async function decideIncremental(
  pool: Pool,
  job: ResolvedJob,
  date: string,
  full: boolean,
): Promise<IncrementalDecision | null> {
  const inc = job.spec.incremental;
  if (!inc) return null;
  const mode = 'changedSince' in inc ? 'changedSince' : 'hash';
  const fullRun = (reason: string): IncrementalDecision => ({ mode, reason, nullKeys: false });
  if (full) return fullRun('--full');
  const base = await findBaseRun<ResolvedJob>(pool, job.name, date);
  if (!base) return fullRun(`no published run of ${job.name} on or before ${date}`);
  const of = `run ${base.id} (${base.date})`;
  if (!base.predictions) return fullRun(`the predictions of ${of} were dropped`);
  const change = scoringChange(base.spec, job);
  if (change) return fullRun(`${change} since ${of}`);
  if (mode === 'changedSince' && !base.incremental?.watermark) return fullRun(`${of} recorded no changedSince watermark`);
  if (mode === 'hash' && !base.hashes) return fullRun(`${of} stored no row hashes`);
  if ((job.challengers ?? []).length > 0 && !base.challengers) return fullRun(`${of} has no challenger predictions`);
  return { mode, base, reason: null, nullKeys: await hasNullKeys(pool, job, date) };
}

/**
 * In the plan transaction, after the run's row, models and empty tables exist: records the
 * watermark (changedSince) or the row hashes (hash) for the next run; for an incremental run
 * also builds its changed set, its chunks over those keys, and carries the other rows over as
 * one done chunk. Returns the rows and chunks to score.
 */
export async function applyIncremental(
  client: PoolClient,
  runId: string,
  job: ResolvedJob,
  date: string,
  decision: IncrementalDecision,
  planned: { rows: number; chunks: ChunkPlan[] } | null,
): Promise<{ rows: number; chunks: ChunkPlan[] }> {
  const started = performance.now();
  const key = quoteIdent(job.key.name);
  const from = fromClause(job);
  const where = dateFilter(job, date);
  const mark = decision.mode === 'changedSince' ? await watermark(client) : undefined;
  if (decision.mode === 'hash') {
    const cols = job.features.map((f) => quoteIdent(f.name));
    const row = `ROW(${cols.join(', ')}, ARRAY[${cols.map((c) => `${c} IS NULL`).join(', ')}])`;
    await createHashes(client, runId, { key, row, from, where });
  }
  const base = decision.base;
  if (!base) {
    await recordIncremental(client, runId, {
      rowsPlanned: planned!.rows,
      chunks: planned!.chunks.length,
      rowsCarried: 0,
      incremental: { mode: decision.mode, full: true, reason: decision.reason, watermark: mark },
    });
    return planned!;
  }
  const challengers = (job.challengers ?? []).length > 0;
  // Small exact statements (probes per changed key): compiling them costs more than it saves
  // (measured: 40 ms of the 130 ms that probing 20k keys took).
  await client.query('SET LOCAL jit = off');
  await lockBase(client, base, challengers);
  if (decision.mode === 'changedSince') {
    const inc = job.spec.incremental as { changedSince: string; lookbackSeconds: number };
    await deltaSince(
      client,
      base,
      { key, column: quoteIdent(inc.changedSince), from, where },
      base.incremental!.watermark!,
      inc.lookbackSeconds,
    );
  } else {
    await deltaHashes(client, runId, base);
  }
  const { changed, gone } = await createChanged(client, runId, job.key.pgType);
  const bounds = await changedBounds(client, runId, Math.ceil(changed / job.spec.chunkRows));
  const edges: (string | null)[] = [null, ...bounds, null];
  const chunks: ChunkPlan[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    chunks.push({ chunkNo: i, lo: edges[i]!, hi: edges[i + 1]!, rowsPlanned: Math.round(changed / (edges.length - 1)) });
  }
  await insertChunks(client, runId, chunks);
  const carryStart = performance.now();
  // A layer, unless the job has challengers (their tables are copied) or the layer would grow
  // past LAYER_SHARE of its root: then this run holds all its rows again, and the next run is a
  // layer on it.
  const layer = !challengers && (await layerSize(client, base)) + changed + gone <= LAYER_SHARE * base.root.rows;
  const carried = await carryOver(client, runId, base, { challengers, layer });
  const carryMs = Math.round(performance.now() - carryStart);
  const total = carried.predictions + carried.rejects;
  if (total + changed === 0 && !decision.nullKeys) {
    throw new NoRowsError(
      `job ${job.name}: no rows in ${job.spec.source.table} for ${job.spec.source.partition} = ${date}; nothing to score (is the feature table loaded?)`,
    );
  }
  const profile = job.spec.monitor.profile === false ? null : await baseProfile(client, base.id);
  await insertCarriedChunk(client, runId, chunks.length, carried, profile);
  // Per slot, as a scored chunk counts: the champion's own rejects are its non-finite outputs.
  await addRunModelCounts(client, runId, [
    { slot: 0, written: carried.predictions, rejected: carried.championRejects },
    ...(job.challengers ?? []).map((c) => ({
      slot: c.slot,
      written: carried.challengerPredictions.get(c.slot) ?? 0,
      rejected: carried.challengerRejects.get(c.slot) ?? 0,
    })),
  ]);
  await recordIncremental(client, runId, {
    rowsPlanned: changed,
    chunks: chunks.length + 1,
    rowsCarried: total,
    incremental: {
      mode: decision.mode,
      full: false,
      baseRunId: base.id,
      watermark: mark,
      changed,
      gone,
      carried: total,
      ...(layer ? { layerOn: base.root.id, readThrough: carried.readThrough } : {}),
      carryMs,
      planMs: Math.round(performance.now() - started),
    },
  });
  return { rows: changed, chunks };
}

/** The base run's stored profile, standing in for its carried rows in this run's drift profile. */
async function baseProfile(client: PoolClient, baseId: string): Promise<Buffer | null> {
  const stored = await runProfile<ColumnProfile[]>(client, baseId);
  return stored ? encodeProfiles(stored.columns) : null;
}

/** True when the date has rows with a NULL key (not when the key column is NOT NULL). */
async function hasNullKeys(pool: Pool, job: ResolvedJob, date: string): Promise<boolean> {
  const t = job.table!;
  const notNull = await pool.query<{ n: boolean }>(
    `SELECT a.attnotnull AS n FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace s ON s.oid = c.relnamespace
      WHERE s.nspname = $1 AND c.relname = $2 AND a.attname = $3`,
    [t.schema, t.name, job.key.name],
  );
  if (notNull.rows[0]?.n) return false;
  const key = quoteIdent(job.key.name);
  const { rows } = await pool.query<{ e: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${fromClause(job)} WHERE ${dateFilter(job, date)} AND ${key} IS NULL) AS e`,
  );
  return rows[0]!.e;
}

/** JSON with its object keys sorted (a run's stored spec is jsonb, which reorders them). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * What changed between the base run's plan and this one that changes scores, or null: only
 * then may a row's prediction be carried over.
 */
export function scoringChange(base: ResolvedJob, job: ResolvedJob): string | null {
  const same = (a: unknown, b: unknown) => canonical(a) === canonical(b);
  const model = (m: ResolvedJob['model']) => `${m.name} v${m.version}`;
  if (base.model.sha256 !== job.model.sha256) return `the model is ${model(job.model)}, not ${model(base.model)}`;
  const slots = (j: ResolvedJob) =>
    (j.challengers ?? []).map((c) => ({ slot: c.slot, sha256: c.model.sha256, mapping: c.mapping, input: c.input }));
  if (!same(slots(base), slots(job))) {
    const list = (j: ResolvedJob) => (j.challengers ?? []).map((c) => model(c.model)).join(', ') || 'none';
    return `the challengers are ${list(job)}, not ${list(base)}`;
  }
  const checks: [string, (j: ResolvedJob) => unknown][] = [
    ['the output mapping', (j) => j.mapping],
    ['the model input', (j) => j.input],
    // The same columns and model, fed to other inputs (`"num": ["f2", "f1"]`), score otherwise.
    ['inputs', (j) => j.feeds ?? null],
    ['source.features', (j) => j.features],
    ['source.key', (j) => j.key],
    ['the source', (j) => ({ table: j.table, query: j.query, partition: j.partition, tz: j.spec.schedule?.timezone ?? 'UTC' })],
    ['onBadRow', (j) => j.spec.onBadRow],
    [
      'incremental',
      (j) => {
        const inc = j.spec.incremental;
        return inc && ('changedSince' in inc ? { changedSince: inc.changedSince } : inc);
      },
    ],
  ];
  for (const [what, pick] of checks) if (!same(pick(base), pick(job))) return `${what} changed`;
  return null;
}
