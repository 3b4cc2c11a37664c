import { escapeLiteral } from 'pg';
import type { Queryable } from '../pool.js';
import { runKeys, runPredictions, type RunRef } from './layers.js';
import { challengerPartitionTable, changedTable, hashesTable, partitionRegclass, partitionTable } from './partitions.js';

/**
 * Incremental runs' tables and statements (runs/incremental.ts). Per run, next to its
 * predictions table:
 * - `prescore.changed_r<id>` (the key in the source's type): the keys its chunks read and score;
 * - `prescore.row_hashes_r<id>` (key text, hash bigint), hash mode only: a hash of each source
 *   row's features, for the next run to compare with.
 * Both are dropped with the run's predictions (partitions.ts). The delta (keys changed, new or
 * gone since the base run) is a temporary table of the plan transaction.
 */
function id(runId: string): bigint {
  return BigInt(runId);
}

/** The delta, created and read by this one name: pg_temp, so no table on the search path can stand in for it. */
const DELTA = 'pg_temp.prescore_delta';

/** The published run an incremental run of (job, date) starts from: the serving run of the newest date <= date. */
export interface BaseRun<Spec> {
  id: string;
  date: string;
  spec: Spec;
  incremental: { watermark?: string; mode?: string } | null;
  predictions: boolean;
  challengers: boolean;
  hashes: boolean;
  /** For a layer: the full run it reads through to (layers.ts). */
  baseRunId: string | null;
  /** The predictions the run has, read through included (runs.rows_written). */
  rowsWritten: number;
  /** The run holding all its rows that a layer on this run reads through to: the run, or its own base. */
  root: { id: string; rows: number };
}

export async function findBaseRun<Spec>(db: Queryable, job: string, date: string): Promise<BaseRun<Spec> | undefined> {
  const { rows } = await db.query<{
    id: string;
    date: string;
    spec: Spec;
    incremental: BaseRun<Spec>['incremental'];
    p: string | null;
    c: string | null;
    h: string | null;
    base: string | null;
    written: string;
    root: string;
    root_rows: string;
    root_p: string | null;
    kept: boolean;
  }>(
    `SELECT r.id::text, s.date::text, r.spec, r.incremental,
            ${partitionRegclass('r.id')}::text AS p,
            to_regclass('prescore.challenger_predictions_r' || r.id)::text AS c,
            to_regclass('prescore.row_hashes_r' || r.id)::text AS h,
            r.base_run_id::text AS base, r.rows_written AS written, r.dropped_at IS NULL AND o.dropped_at IS NULL AS kept,
            o.id::text AS root, o.rows_written AS root_rows, ${partitionRegclass('o.id')}::text AS root_p
       FROM prescore.serving s JOIN prescore.runs r ON r.id = s.run_id
       JOIN prescore.runs o ON o.id = coalesce(r.base_run_id, r.id)
      WHERE s.job = $1 AND s.date <= $2::date ORDER BY s.date DESC LIMIT 1`,
    [job, date],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    id: r.id,
    date: r.date,
    spec: r.spec,
    incremental: r.incremental,
    predictions: r.p !== null && r.root_p !== null && r.kept,
    challengers: r.c !== null,
    hashes: r.h !== null,
    baseRunId: r.base,
    rowsWritten: Number(r.written),
    root: { id: r.root, rows: Number(r.root_rows) },
  };
}

/**
 * The time from which a row counts as changed for the NEXT run: this transaction's start, or
 * earlier when another transaction began before it and is still open (rows it writes commit
 * after this snapshot, stamped with its own, earlier, now()). As text, to the microsecond.
 */
export async function watermark(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ w: string }>(
    `SELECT least(now(), (SELECT min(xact_start) FROM pg_stat_activity
                           WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'))::text AS w`,
  );
  return rows[0]!.w;
}

/** Retention is dropping the run an incremental run was planned from: planning again picks another. */
export class BaseDroppedError extends Error {
  constructor(readonly runId: string) {
    super(`run ${runId}, which this run reads its unchanged rows from, is being dropped by retention; run it again`);
    this.name = 'BaseDroppedError';
  }
}

/** Locks the base run's tables against a concurrent drop (retention) until this transaction ends. */
export async function lockBase(db: Queryable, base: BaseRun<unknown>, challengers: boolean): Promise<void> {
  // The rows first (retention's claimDrop locks a run's row before it decides to drop it), so
  // retention either waits for this plan and sees its layer, or has claimed the run already.
  const { rows } = await db.query<{ id: string; dropping: boolean }>(
    `SELECT id::text, dropped_at IS NOT NULL AS dropping FROM prescore.runs WHERE id = ANY ($1::bigint[]) FOR KEY SHARE`,
    [[...new Set([base.id, base.root.id])]],
  );
  const dropping = rows.find((r) => r.dropping);
  if (dropping) throw new BaseDroppedError(dropping.id);
  await db.query(`LOCK TABLE ${partitionTable(base.id)} IN ACCESS SHARE MODE`);
  if (base.baseRunId) await db.query(`LOCK TABLE ${partitionTable(base.baseRunId)} IN ACCESS SHARE MODE`);
  if (challengers) await db.query(`LOCK TABLE ${challengerPartitionTable(base.id)} IN ACCESS SHARE MODE`);
}

/**
 * The run's row hashes: one per source row with a key. `row` is the features as an SQL row
 * constructor with their NULL flags (hash_record_extended hashes NULL and 0 alike).
 */
export async function createHashes(
  db: Queryable,
  runId: string,
  select: { key: string; row: string; from: string; where: string },
) {
  await db.query(
    `CREATE TABLE ${hashesTable(runId)} AS
       SELECT ${select.key}::text COLLATE "C" AS key, hash_record_extended(${select.row}, 0) AS hash
         FROM ${select.from} WHERE ${select.where} AND ${select.key} IS NOT NULL`,
  );
}

function ref(base: BaseRun<unknown>): RunRef {
  return { runId: base.id, baseRunId: base.baseRunId };
}

/**
 * What the base run has of a delta key, as columns of the delta, each a probe of a key index
 * per key (a subquery per row: OFFSET 0 keeps the planner from hashing millions of the base
 * run's keys instead, measured on 2M rows: 585 ms against 32 ms): `in_root`, a prediction of
 * the run holding all the base's rows (its mask is what a layer on it hides); `in_own` and
 * `masked`, for a base that is a layer, a prediction in its own table and a key of its mask.
 * So the base has a prediction for the key when in_own OR (in_root AND NOT masked).
 */
function probes(base: BaseRun<unknown>, key: string): string {
  const probe = (from: string, where = '') => `EXISTS (SELECT 1 FROM ${from} p WHERE p.key = ${key}${where} OFFSET 0)`;
  const inRoot = `${probe(partitionTable(base.root.id))} AS in_root`;
  if (!base.baseRunId) return `${inRoot}, false AS in_own, false AS masked`;
  return `${inRoot}, ${probe(partitionTable(base.id))} AS in_own, ${probe('prescore.layer_masks', ` AND p.run_id = ${id(base.id)}`)} AS masked`;
}

/** The delta, made by `select` (key, gone), with the base run's probes (probes()). */
async function createDelta(db: Queryable, base: BaseRun<unknown>, select: string): Promise<void> {
  await db.query(
    `CREATE TEMP TABLE ${DELTA} ON COMMIT DROP AS
       SELECT d.key, d.gone, ${probes(base, 'd.key')} FROM (${select}) d`,
  );
}

/**
 * changedSince: the delta of the source's date against the base run: keys whose column is at or
 * after `since` (or NULL), read on the source's index; then keys gone (in the base run, not in
 * the source any more) and keys new without a recent stamp. Those two need the date's every key
 * against the base run's, so they are looked for only when the counts say some exist: the
 * source's keys must number the base run's, less the gone, plus the new among the changed.
 */
export async function deltaSince(
  db: Queryable,
  base: BaseRun<unknown>,
  select: { key: string; column: string; from: string; where: string },
  since: string,
  lookbackSeconds: number,
): Promise<void> {
  const from = `${escapeLiteral(since)}::timestamptz - make_interval(secs => ${Math.trunc(lookbackSeconds)})`;
  const source = `SELECT ${select.key}::text COLLATE "C" AS k FROM ${select.from} WHERE ${select.where} AND ${select.key} IS NOT NULL`;
  // Two index ranges (an index on the date and the column answers both), not one OR filter.
  const stamped = (cond: string) =>
    `SELECT ${select.key}::text COLLATE "C" AS key, false AS gone
       FROM ${select.from} WHERE ${select.where} AND ${select.key} IS NOT NULL AND ${cond}`;
  await createDelta(db, base, `${stamped(`${select.column} >= ${from}`)} UNION ALL ${stamped(`${select.column} IS NULL`)}`);
  // Statistics, so the join with the base run's rejects is planned for the delta's real size.
  await db.query(`ANALYZE ${DELTA}`);
  const { rows } = await db.query<{ source: string; known: string; delta: string; rejects: string; rejected: string }>(
    `SELECT (SELECT count(*) FROM ${select.from} WHERE ${select.where} AND ${select.key} IS NOT NULL) AS source,
            (SELECT count(*) FILTER (WHERE in_own OR (in_root AND NOT masked)) FROM ${DELTA}) AS known,
            (SELECT count(*) FROM ${DELTA}) AS delta,
            (SELECT count(*) FROM ${DELTA} d JOIN prescore.rejects r ON r.key COLLATE "C" = d.key AND r.run_id = ${id(base.id)}) AS rejected,
            (SELECT count(*) FROM prescore.rejects WHERE run_id = ${id(base.id)} AND key IS NOT NULL) AS rejects`,
  );
  const r = rows[0]!;
  // Delta keys the base run has: predicted, or rejected (its rejects are all its own, never read through).
  const fresh = Number(r.delta) - Number(r.known) - Number(r.rejected);
  const gone = base.rowsWritten + Number(r.rejects) - (Number(r.source) - fresh);
  if (gone === 0) return;
  // Keys gone, or new with an older stamp: the date's keys against the base run's, in full.
  await db.query(
    `INSERT INTO ${DELTA}
     SELECT x.key, x.gone, ${probes(base, 'x.key')} FROM (
       SELECT coalesce(s.k, b.key) AS key, s.k IS NULL AS gone FROM (${source}) s
         FULL JOIN (${runKeys(ref(base))}) b ON b.key = s.k
        WHERE (s.k IS NULL OR b.key IS NULL) AND NOT EXISTS (SELECT 1 FROM ${DELTA} d WHERE d.key = coalesce(s.k, b.key))) x`,
  );
}

/** hash: the delta of this run's row hashes against the base run's keys and hashes. */
export async function deltaHashes(db: Queryable, runId: string, base: BaseRun<unknown>): Promise<void> {
  await createDelta(
    db,
    base,
    `SELECT coalesce(n.key, p.key) AS key, n.key IS NULL AS gone
       FROM ${hashesTable(runId)} n
       FULL JOIN (SELECT o.key, h.hash FROM (${runKeys(ref(base))}) o LEFT JOIN ${hashesTable(base.id)} h ON h.key = o.key) p
         ON p.key = n.key
      WHERE n.key IS NULL OR p.key IS NULL OR p.hash IS NULL OR n.hash IS DISTINCT FROM p.hash`,
  );
}

/** The changed set: delta keys still in the source, in the key's type (`keyType` from the catalog). */
export async function createChanged(db: Queryable, runId: string, keyType: string): Promise<{ changed: number; gone: number }> {
  await db.query(`ANALYZE ${DELTA}`);
  // Keyed and filled in key order: a chunk's reader probes the source's key index in that order
  // (measured on 2M rows: 54 ms for 20k keys, against 124 ms in hash order).
  await db.query(`CREATE TABLE ${changedTable(runId)} (key ${keyType} PRIMARY KEY)`);
  await db.query(`INSERT INTO ${changedTable(runId)} SELECT key::${keyType} FROM ${DELTA} WHERE NOT gone ORDER BY 1`);
  await db.query(`ANALYZE ${changedTable(runId)}`);
  const { rows } = await db.query<{ changed: string; gone: string }>(
    `SELECT count(*) FILTER (WHERE NOT gone) AS changed, count(*) FILTER (WHERE gone) AS gone FROM ${DELTA}`,
  );
  return { changed: Number(rows[0]!.changed), gone: Number(rows[0]!.gone) };
}

/** Key ranges of about `chunkRows` changed keys each, as text bounds (cast back when read). */
export async function changedBounds(db: Queryable, runId: string, parts: number): Promise<string[]> {
  if (parts <= 1) return [];
  const fractions = Array.from({ length: parts - 1 }, (_, i) => (i + 1) / parts);
  const { rows } = await db.query<{ b: string[] | null }>(
    `SELECT percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY key)::text[] AS b FROM ${changedTable(runId)}`,
    [fractions],
  );
  return [...new Set((rows[0]?.b ?? []).filter((b): b is string => b !== null))];
}

/** What the carry-over copied, or (a layer) reads through. */
export interface Carried {
  predictions: number;
  rejects: number;
  /** Of `rejects`: the champion's own (non-finite output), not bad features. */
  championRejects: number;
  challengerPredictions: Map<number, number>;
  challengerRejects: Map<number, number>;
  /** A layer: of `predictions`, those it reads through to its base instead of holding. */
  readThrough: number;
}

/** A layer's own size: the rows in its table and the keys in its mask (0 for a run holding all its rows). */
export async function layerSize(db: Queryable, base: BaseRun<unknown>): Promise<number> {
  if (!base.baseRunId) return 0;
  const { rows } = await db.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM ${partitionTable(base.id)}) + (SELECT count(*) FROM prescore.layer_masks WHERE run_id = ${id(base.id)}) AS n`,
  );
  return Number(rows[0]!.n);
}

/**
 * Carries the base run's rows of every key not in the delta (so: unchanged and still in the
 * source) into this run: rejects (and per challenger slot its predictions and rejects) are
 * copied; predictions are copied too, or with `layer` this run becomes a layer on the base's
 * root (layers.ts): it copies only the rows of the base's own layer and masks the root's keys
 * in the delta, and reads the rest through. Statements of the plan transaction: they commit
 * with the run, or not at all.
 */
export async function carryOver(
  db: Queryable,
  runId: string,
  base: BaseRun<unknown>,
  options: { challengers: boolean; layer: boolean },
): Promise<Carried> {
  const keep = (alias: string) => `NOT EXISTS (SELECT 1 FROM ${DELTA} d WHERE d.key = ${alias}.key)`;
  const n = id(runId);
  let predictions: number;
  let readThrough = 0;
  if (options.layer) {
    let own = 0;
    let masked = 0;
    if (base.baseRunId) {
      const copied = await db.query(
        `INSERT INTO ${partitionTable(runId)} (run_id, key, score, label, outputs)
         SELECT ${n}, p.key, p.score, p.label, p.outputs FROM ${partitionTable(base.id)} p WHERE ${keep('p')}`,
      );
      own = copied.rowCount ?? 0;
      const inherited = await db.query(
        `INSERT INTO prescore.layer_masks (run_id, key) SELECT ${n}, key FROM prescore.layer_masks WHERE run_id = ${id(base.id)}`,
      );
      masked += inherited.rowCount ?? 0;
    }
    // The root's keys among the delta (probed when the delta was made), in key order; a key
    // masked already is not inserted again, nor counted.
    const added = await db.query(
      `INSERT INTO prescore.layer_masks (run_id, key) SELECT ${n}, key FROM ${DELTA} WHERE in_root ORDER BY key
       ON CONFLICT DO NOTHING`,
    );
    masked += added.rowCount ?? 0;
    readThrough = base.root.rows - masked;
    predictions = own + readThrough;
    await db.query(`UPDATE prescore.runs SET base_run_id = ${id(base.root.id)} WHERE id = ${n}`);
  } else {
    const copied = await db.query(
      `INSERT INTO ${partitionTable(runId)} (run_id, key, score, label, outputs)
       SELECT ${n}, key, score, label, outputs FROM (${runPredictions(ref(base), 'key, score, label, outputs', keep('prescore.predictions'))}) p`,
    );
    predictions = copied.rowCount ?? 0;
  }
  const rejects = await db.query<{ own: string; n: string }>(
    `WITH ins AS (
       INSERT INTO prescore.rejects (run_id, key, reason)
       SELECT ${n}, r.key, r.reason FROM prescore.rejects r
        WHERE r.run_id = ${id(base.id)} AND r.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${DELTA} d WHERE d.key = r.key COLLATE "C")
       RETURNING reason)
     SELECT count(*) AS n, count(*) FILTER (WHERE reason LIKE 'model output %') AS own FROM ins`,
  );
  const carried: Carried = {
    predictions,
    rejects: Number(rejects.rows[0]!.n),
    championRejects: Number(rejects.rows[0]!.own),
    challengerPredictions: new Map(),
    challengerRejects: new Map(),
    readThrough,
  };
  if (!options.challengers) return carried;
  const cp = await db.query<{ slot: number; n: string }>(
    `WITH ins AS (
       INSERT INTO ${challengerPartitionTable(runId)} (run_id, slot, key, score, label, outputs)
       SELECT ${n}, p.slot, p.key, p.score, p.label, p.outputs FROM ${challengerPartitionTable(base.id)} p WHERE ${keep('p')}
       RETURNING slot)
     SELECT slot, count(*) AS n FROM ins GROUP BY slot`,
  );
  for (const r of cp.rows) carried.challengerPredictions.set(r.slot, Number(r.n));
  const cr = await db.query<{ slot: number; n: string }>(
    `WITH ins AS (
       INSERT INTO prescore.challenger_rejects (run_id, slot, key, reason)
       SELECT ${n}, r.slot, r.key, r.reason FROM prescore.challenger_rejects r
        WHERE r.run_id = ${id(base.id)} AND r.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${DELTA} d WHERE d.key = r.key COLLATE "C")
       RETURNING slot)
     SELECT slot, count(*) AS n FROM ins GROUP BY slot`,
  );
  for (const r of cr.rows) carried.challengerRejects.set(r.slot, Number(r.n));
  return carried;
}

/**
 * The carried rows as one chunk of the run, done in the transaction that copied them: read =
 * carried rows, written = carried predictions, rejected = carried rejects, so the run's counts add
 * up as for a chunk it scored. `profile`: the base run's profile (encoded), standing in for the
 * carried rows' features and outputs.
 */
export async function insertCarriedChunk(
  db: Queryable,
  runId: string,
  chunkNo: number,
  carried: Carried,
  profile: Buffer | null,
): Promise<void> {
  const total = carried.predictions + carried.rejects;
  await db.query(
    `INSERT INTO prescore.run_chunks (run_id, chunk_no, lo, hi, rows_planned, status, rows_read, rows_written, rows_rejected,
                                      profile, attempts, finished_at, carried)
     VALUES ($1::bigint, $2, NULL, NULL, $3, 'done', $3, $4, $5, $6, 1, now(), true)`,
    [runId, chunkNo, total, carried.predictions, carried.rejects, profile],
  );
}

/** The run's plan as recorded: its counts and how it was planned (runs.incremental). */
export async function recordIncremental(
  db: Queryable,
  runId: string,
  plan: { rowsPlanned: number; chunks: number; rowsCarried: number; incremental: object },
): Promise<void> {
  await db.query(
    `UPDATE prescore.runs SET rows_planned = $2, chunks = $3, rows_carried = $4, incremental = $5 WHERE id = $1::bigint`,
    [runId, plan.rowsPlanned, plan.chunks, plan.rowsCarried, JSON.stringify(plan.incremental)],
  );
}

/** The chunk reader's filter of an incremental run: its changed keys (and NULL keys, which no run carries). */
export function changedKeysFilter(key: string, runId: string, nullKeys: boolean): string {
  const inSet = `${key} IN (SELECT key FROM ${changedTable(runId)})`;
  return nullKeys ? `(${inSet} OR ${key} IS NULL)` : inSet;
}
