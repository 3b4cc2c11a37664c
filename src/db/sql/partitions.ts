import { PG } from '../codes.js';
import type { Queryable } from '../pool.js';

/**
 * A run's predictions live in a table of their own, `prescore.predictions_r<id>`: loaded
 * without indexes, indexed, then attached to the partitioned `prescore.predictions` at
 * publish. These are the only places its name is written.
 */
export function partitionName(runId: string | bigint): string {
  return `predictions_r${BigInt(runId)}`;
}

/** The schema-qualified name, safe to paste into SQL (digits only after the prefix). */
export function partitionTable(runId: string | bigint): string {
  return `prescore.${partitionName(runId)}`;
}

/**
 * The run's predictions table as a regclass, NULL once it is dropped, for the run id that the
 * SQL expression `idSql` gives (e.g. `r.id`): for statements over many runs.
 */
export function partitionRegclass(idSql: string): string {
  return `to_regclass('prescore.predictions_r' || (${idSql})::text)`;
}

/**
 * A run's challenger predictions, `prescore.challenger_predictions_r<id>`: the twin of its
 * predictions table, created, indexed, attached and dropped with it (a run without challengers
 * has none).
 */
export function challengerPartitionName(runId: string | bigint): string {
  return `challenger_predictions_r${BigInt(runId)}`;
}

export function challengerPartitionTable(runId: string | bigint): string {
  return `prescore.${challengerPartitionName(runId)}`;
}

/**
 * An incremental run's own tables (db/sql/carry.ts): its changed keys, and in hash mode its row
 * hashes. Dropped with its predictions.
 */
export function changedTable(runId: string | bigint): string {
  return `prescore.changed_r${BigInt(runId)}`;
}

export function hashesTable(runId: string | bigint): string {
  return `prescore.row_hashes_r${BigInt(runId)}`;
}

/**
 * Same columns as the parent, a CHECK that lets ATTACH skip its validation scan, no index yet.
 * With challengers, their table too, in the same transaction.
 */
export async function createPartition(db: Queryable, runId: string, challengers = false): Promise<void> {
  const name = partitionName(runId);
  await db.query(
    `CREATE TABLE prescore.${name} (LIKE prescore.predictions INCLUDING DEFAULTS,
       CONSTRAINT ${name}_run CHECK (run_id = ${BigInt(runId)}))`,
  );
  if (!challengers) return;
  const twin = challengerPartitionName(runId);
  await db.query(
    `CREATE TABLE prescore.${twin} (LIKE prescore.challenger_predictions INCLUDING DEFAULTS,
       CONSTRAINT ${twin}_run CHECK (run_id = ${BigInt(runId)}), CONSTRAINT ${twin}_slot CHECK (slot BETWEEN 1 AND 3))`,
  );
}

/** True when the run has a challenger predictions table. */
export async function hasChallengerPartition(db: Queryable, runId: string): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [challengerPartitionTable(runId)]);
  return rows[0]!.t !== null;
}

export async function partitionExists(db: Queryable, runId: string): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [partitionTable(runId)]);
  return rows[0]!.t !== null;
}

/**
 * The unique key index, built once the load is done (sorting once beats maintaining it row by
 * row). Call in a transaction: two finalizes of one run (a redelivered job) take turns on a
 * transaction lock, so the second finds the index built instead of colliding in the catalog.
 */
export async function indexPartition(db: Queryable, runId: string): Promise<void> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtext('prescore.index:' || $1::text))`, [runId]);
  await db.query(`SET LOCAL maintenance_work_mem = '256MB'`);
  await db.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${partitionName(runId)}_key ON ${partitionTable(runId)} (key)`);
  if (await hasChallengerPartition(db, runId)) {
    const twin = challengerPartitionName(runId);
    await db.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${twin}_key ON prescore.${twin} (key, slot)`);
  }
}

export async function analyzePartition(db: Queryable, runId: string): Promise<void> {
  await db.query(`ANALYZE ${partitionTable(runId)}`);
  if (await hasChallengerPartition(db, runId)) await db.query(`ANALYZE ${challengerPartitionTable(runId)}`);
}

/** Rows per challenger slot in the run's challenger table. */
export async function countChallengerPartition(db: Queryable, runId: string): Promise<Map<number, number>> {
  if (!(await hasChallengerPartition(db, runId))) return new Map();
  const { rows } = await db.query<{ slot: number; n: string }>(
    `SELECT slot, count(*) AS n FROM ${challengerPartitionTable(runId)} GROUP BY slot`,
  );
  return new Map(rows.map((r) => [r.slot, Number(r.n)]));
}

export async function countPartition(db: Queryable, runId: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${partitionTable(runId)}`);
  return Number(rows[0]!.n);
}

/** True when `err` is the unique index of the run's table refusing a key stored twice. */
export function isDuplicateKey(err: unknown, runId: string): boolean {
  const e = err as { code?: string; table?: string } | null;
  return e?.code === PG.uniqueViolation && (e.table === partitionName(runId) || e.table === challengerPartitionName(runId));
}

/** A key stored twice in the run's table (the unique index refused it), for the error message. */
export async function duplicateKey(db: Queryable, runId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ key: string }>(
    `SELECT key FROM ${partitionTable(runId)} GROUP BY key HAVING count(*) > 1 LIMIT 1`,
  );
  return rows[0]?.key;
}

/** Attaches the run's table, and its challenger table when it has one: call in the publish transaction. */
export async function attachPartition(db: Queryable, runId: string): Promise<void> {
  await db.query(`ALTER TABLE prescore.predictions ATTACH PARTITION ${partitionTable(runId)} FOR VALUES IN (${BigInt(runId)})`);
  if (await hasChallengerPartition(db, runId)) {
    await db.query(
      `ALTER TABLE prescore.challenger_predictions ATTACH PARTITION ${challengerPartitionTable(runId)} FOR VALUES IN (${BigInt(runId)})`,
    );
  }
}

/** The binary COPY a chunk writes its predictions with. */
export function copyIntoPartition(runId: string, columns: string): string {
  return `COPY ${partitionTable(runId)} ${columns} FROM STDIN (FORMAT binary)`;
}

/** The binary COPY a chunk writes its challengers' predictions with. */
export function copyIntoChallengerPartition(runId: string, columns: string): string {
  return `COPY ${challengerPartitionTable(runId)} ${columns} FROM STDIN (FORMAT binary)`;
}

/**
 * Drops a run's table, detaching it first when attached: dropping an attached partition would
 * lock the whole predictions table against readers; detaching it concurrently does not
 * (PostgreSQL 14+).
 */
export async function dropPartition(db: Queryable, runId: string): Promise<void> {
  for (const [parent, table] of [
    ['prescore.challenger_predictions', challengerPartitionTable(runId)],
    ['prescore.predictions', partitionTable(runId)],
  ] as const) {
    const attached = await db.query(`SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)`, [table]);
    if (attached.rowCount) {
      await db.query(`ALTER TABLE ${parent} DETACH PARTITION ${table} CONCURRENTLY`).catch(async () => {
        await db.query(`ALTER TABLE ${parent} DETACH PARTITION ${table}`);
      });
    }
    await db.query(`DROP TABLE IF EXISTS ${table}`);
  }
  await db.query(`DROP TABLE IF EXISTS ${changedTable(runId)}, ${hashesTable(runId)}`);
}

/** Drops an unattached run's tables unless a chunk still writes them (then a later publish drops them). */
export async function dropPartitionNow(db: Queryable, runId: string): Promise<void> {
  await db.query(
    `SET lock_timeout = '2s'; DROP TABLE IF EXISTS ${challengerPartitionTable(runId)}, ${partitionTable(runId)}, ${changedTable(runId)}, ${hashesTable(runId)}; RESET lock_timeout`,
  );
}
