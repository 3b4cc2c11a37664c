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

/** Same columns as the parent, a CHECK that lets ATTACH skip its validation scan, no index yet. */
export async function createPartition(db: Queryable, runId: string): Promise<void> {
  const name = partitionName(runId);
  await db.query(
    `CREATE TABLE prescore.${name} (LIKE prescore.predictions INCLUDING DEFAULTS,
       CONSTRAINT ${name}_run CHECK (run_id = ${BigInt(runId)}))`,
  );
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
}

export async function analyzePartition(db: Queryable, runId: string): Promise<void> {
  await db.query(`ANALYZE ${partitionTable(runId)}`);
}

export async function countPartition(db: Queryable, runId: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${partitionTable(runId)}`);
  return Number(rows[0]!.n);
}

/** True when `err` is the unique index of the run's table refusing a key stored twice. */
export function isDuplicateKey(err: unknown, runId: string): boolean {
  const e = err as { code?: string; table?: string } | null;
  return e?.code === PG.uniqueViolation && e.table === partitionName(runId);
}

/** A key stored twice in the run's table (the unique index refused it), for the error message. */
export async function duplicateKey(db: Queryable, runId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ key: string }>(
    `SELECT key FROM ${partitionTable(runId)} GROUP BY key HAVING count(*) > 1 LIMIT 1`,
  );
  return rows[0]?.key;
}

export async function attachPartition(db: Queryable, runId: string): Promise<void> {
  await db.query(`ALTER TABLE prescore.predictions ATTACH PARTITION ${partitionTable(runId)} FOR VALUES IN (${BigInt(runId)})`);
}

/** The binary COPY a chunk writes its predictions with. */
export function copyIntoPartition(runId: string, columns: string): string {
  return `COPY ${partitionTable(runId)} ${columns} FROM STDIN (FORMAT binary)`;
}

/**
 * Drops a run's table, detaching it first when attached: dropping an attached partition would
 * lock the whole predictions table against readers; detaching it concurrently does not
 * (PostgreSQL 14+).
 */
export async function dropPartition(db: Queryable, runId: string): Promise<void> {
  const table = partitionTable(runId);
  const attached = await db.query(`SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)`, [table]);
  if (attached.rowCount) {
    await db.query(`ALTER TABLE prescore.predictions DETACH PARTITION ${table} CONCURRENTLY`).catch(async () => {
      await db.query(`ALTER TABLE prescore.predictions DETACH PARTITION ${table}`);
    });
  }
  await db.query(`DROP TABLE IF EXISTS ${table}`);
}

/** Drops an unattached run's table unless a chunk still writes it (then a later publish drops it). */
export async function dropPartitionNow(db: Queryable, runId: string): Promise<void> {
  await db.query(`SET lock_timeout = '2s'; DROP TABLE IF EXISTS ${partitionTable(runId)}; RESET lock_timeout`);
}
