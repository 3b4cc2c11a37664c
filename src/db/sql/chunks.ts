import type { Queryable } from '../pool.js';

/**
 * `prescore.run_chunks`: a run's key ranges and their done-markers. A chunk's marker commits in
 * the same transaction as its rows, so "done" means "its predictions are stored".
 */
export interface ChunkRow {
  chunkNo: number;
  lo: string | null;
  hi: string | null;
  done: boolean;
}

export async function insertChunks(
  db: Queryable,
  runId: string,
  chunks: { chunkNo: number; lo: string | null; hi: string | null; rowsPlanned: number }[],
): Promise<void> {
  await db.query(
    `INSERT INTO prescore.run_chunks (run_id, chunk_no, lo, hi, rows_planned)
     SELECT $1::bigint, n, lo, hi, r FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[]) AS c(n, lo, hi, r)`,
    [runId, chunks.map((c) => c.chunkNo), chunks.map((c) => c.lo), chunks.map((c) => c.hi), chunks.map((c) => c.rowsPlanned)],
  );
}

export async function listChunks(db: Queryable, runId: string): Promise<ChunkRow[]> {
  const { rows } = await db.query<{ chunk_no: number; lo: string | null; hi: string | null; status: string }>(
    'SELECT chunk_no, lo, hi, status FROM prescore.run_chunks WHERE run_id = $1::bigint ORDER BY chunk_no',
    [runId],
  );
  return rows.map((r) => ({ chunkNo: r.chunk_no, lo: r.lo, hi: r.hi, done: r.status === 'done' }));
}

export async function chunkBounds(
  db: Queryable,
  runId: string,
  chunkNo: number,
): Promise<{ lo: string | null; hi: string | null } | undefined> {
  const { rows } = await db.query<{ lo: string | null; hi: string | null }>(
    'SELECT lo, hi FROM prescore.run_chunks WHERE run_id = $1::bigint AND chunk_no = $2',
    [runId, chunkNo],
  );
  return rows[0];
}

/**
 * Locks a chunk's row for its transaction (a duplicate delivery waits here, then sees it
 * done) and returns its state and its run's.
 */
export async function lockChunk(
  db: Queryable,
  runId: string,
  chunkNo: number,
): Promise<{ done: boolean; runStatus: string } | undefined> {
  const { rows } = await db.query<{ status: string; run_status: string }>(
    `SELECT c.status, r.status AS run_status FROM prescore.run_chunks c JOIN prescore.runs r ON r.id = c.run_id
      WHERE c.run_id = $1::bigint AND c.chunk_no = $2 FOR UPDATE OF c`,
    [runId, chunkNo],
  );
  return rows[0] && { done: rows[0].status === 'done', runStatus: rows[0].run_status };
}

export async function markChunkDone(
  db: Queryable,
  runId: string,
  chunkNo: number,
  counts: { read: number; written: number; rejected: number },
  profile: Buffer | null,
): Promise<void> {
  await db.query(
    `UPDATE prescore.run_chunks SET status = 'done', rows_read = $3, rows_written = $4, rows_rejected = $5,
            profile = $6, attempts = attempts + 1, error = NULL, finished_at = now()
      WHERE run_id = $1::bigint AND chunk_no = $2`,
    [runId, chunkNo, counts.read, counts.written, counts.rejected, profile],
  );
}

export async function recordChunkError(db: Queryable, runId: string, chunkNo: number, error: string): Promise<void> {
  await db.query(
    `UPDATE prescore.run_chunks SET attempts = attempts + 1, error = $3 WHERE run_id = $1::bigint AND chunk_no = $2`,
    [runId, chunkNo, error],
  );
}

/** Chunks not done get a clean slate for a retry; done ones are kept. */
export async function clearChunkErrors(db: Queryable, runId: string): Promise<void> {
  await db.query(`UPDATE prescore.run_chunks SET error = NULL WHERE run_id = $1::bigint AND status <> 'done'`, [runId]);
}

export async function undoneChunkNumbers(db: Queryable, runId: string): Promise<number[]> {
  const { rows } = await db.query<{ chunk_no: number }>(
    `SELECT chunk_no FROM prescore.run_chunks WHERE run_id = $1::bigint AND status <> 'done' ORDER BY chunk_no`,
    [runId],
  );
  return rows.map((r) => r.chunk_no);
}

export interface ChunkTotals {
  chunks: number;
  done: number;
  read: number;
  written: number;
  rejected: number;
}

export async function chunkTotals(db: Queryable, runId: string): Promise<ChunkTotals> {
  const { rows } = await db.query<Record<keyof ChunkTotals, string>>(
    `SELECT count(*) AS chunks, count(*) FILTER (WHERE status = 'done') AS done,
            coalesce(sum(rows_read), 0) AS read, coalesce(sum(rows_written), 0) AS written,
            coalesce(sum(rows_rejected), 0) AS rejected
       FROM prescore.run_chunks WHERE run_id = $1::bigint`,
    [runId],
  );
  const r = rows[0]!;
  return { chunks: +r.chunks, done: +r.done, read: +r.read, written: +r.written, rejected: +r.rejected };
}

/** Chunk profiles fetched per query: a round trip per 16, and at most 16 (about 1 MiB) in memory. */
const PROFILES_PER_QUERY = 16;

/** Each chunk's stored profile, in chunk order, a few chunks per query (memory stays bounded). */
export async function forEachChunkProfile(db: Queryable, runId: string, fn: (profile: Buffer) => void): Promise<void> {
  const { rows } = await db.query<{ chunk_no: number }>(
    'SELECT chunk_no FROM prescore.run_chunks WHERE run_id = $1::bigint AND profile IS NOT NULL ORDER BY chunk_no',
    [runId],
  );
  for (let i = 0; i < rows.length; i += PROFILES_PER_QUERY) {
    const some = rows.slice(i, i + PROFILES_PER_QUERY).map((r) => r.chunk_no);
    const page = await db.query<{ profile: Buffer | null }>(
      'SELECT profile FROM prescore.run_chunks WHERE run_id = $1::bigint AND chunk_no = ANY($2::int[]) ORDER BY chunk_no',
      [runId, some],
    );
    for (const r of page.rows) if (r.profile) fn(r.profile);
  }
}
