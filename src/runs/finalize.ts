import { InputError, RunError } from '../errors.js';
import type { Logger } from '../log.js';
import { withTransaction, type Pool } from '../db/pool.js';
import type { FeatureStats } from '../source/decode.js';
import { partitionName } from './store.js';

export const PUBLISH_CHANNEL = 'prescore_publish';

interface Totals {
  chunks: number;
  done: number;
  read: number;
  written: number;
  rejected: number;
}

async function totals(pool: Pool, runId: string): Promise<Totals> {
  const { rows } = await pool.query<Record<keyof Totals, string>>(
    `SELECT count(*) AS chunks, count(*) FILTER (WHERE status = 'done') AS done,
            coalesce(sum(rows_read), 0) AS read, coalesce(sum(rows_written), 0) AS written,
            coalesce(sum(rows_rejected), 0) AS rejected
       FROM prescore.run_chunks WHERE run_id = $1::bigint`,
    [runId],
  );
  const r = rows[0]!;
  return { chunks: +r.chunks, done: +r.done, read: +r.read, written: +r.written, rejected: +r.rejected };
}

function mergeStats(
  chunks: {
    feature: string;
    count: number;
    nulls: number;
    sum: number;
    sumSq: number;
    min: number | null;
    max: number | null;
  }[][],
) {
  const merged = new Map<string, FeatureStats>();
  for (const list of chunks) {
    for (const s of list) {
      const m = merged.get(s.feature) ?? { count: 0, nulls: 0, sum: 0, sumSq: 0, min: Infinity, max: -Infinity };
      m.count += s.count;
      m.nulls += s.nulls;
      m.sum += s.sum;
      m.sumSq += s.sumSq;
      if (s.min !== null && s.min < m.min) m.min = s.min;
      if (s.max !== null && s.max > m.max) m.max = s.max;
      merged.set(s.feature, m);
    }
  }
  return merged;
}

/**
 * Finalizes a run whose chunks are all done: checks every row is accounted for
 * (read = written + rejected, and the table holds exactly `written` rows), enforces the
 * reject rate, indexes the run's table, gathers feature statistics, then publishes in ONE
 * transaction: attach the table as a partition, swap the serving pointer, NOTIFY. Until that
 * commit, readers see the previous run. Finally drops runs past the job's keepRuns.
 */
export async function finalizeRun(pool: Pool, runId: string, log: Logger): Promise<void> {
  const run = await pool.query<{
    job: string;
    date: string;
    status: string;
    spec: { spec: { maxRejectRate: number; keepRuns: number; retainDays?: number } };
  }>('SELECT job, date::text, status, spec FROM prescore.runs WHERE id = $1::bigint', [runId]);
  const info = run.rows[0];
  if (!info) throw new RunError(runId, `run ${runId} does not exist`);
  if (info.status === 'published') return;
  if (info.status !== 'running' && info.status !== 'finalizing') {
    throw new RunError(runId, `run ${runId} is ${info.status}; only a running run can be published`);
  }
  const where = `job ${info.job} ${info.date}: run ${runId}`;
  const t = await totals(pool, runId);
  if (t.done !== t.chunks) throw new RunError(runId, `${where}: ${t.chunks - t.done} of ${t.chunks} chunks are not done`);
  await pool.query(`UPDATE prescore.runs SET status = 'finalizing' WHERE id = $1::bigint AND status = 'running'`, [runId]);
  if (t.read !== t.written + t.rejected) {
    throw new RunError(runId, `${where}: rows do not add up: read ${t.read} != written ${t.written} + rejected ${t.rejected}`);
  }
  const table = `prescore.${partitionName(runId)}`;
  const { maxRejectRate, keepRuns, retainDays } = info.spec.spec;
  const rate = t.read === 0 ? 0 : t.rejected / t.read;
  if (rate > maxRejectRate) {
    const sample = await pool.query<{ key: string | null; reason: string }>(
      'SELECT key, reason FROM prescore.rejects WHERE run_id = $1::bigint LIMIT 3',
      [runId],
    );
    const examples = sample.rows.map((r) => `${r.key ?? 'NULL'}: ${r.reason}`).join('; ');
    throw new InputError(
      `${where}: ${t.rejected} of ${t.read} rows rejected (${(rate * 100).toFixed(2)}%), above maxRejectRate ${maxRejectRate}; e.g. ${examples}`,
    );
  }
  try {
    await withTransaction(pool, async (client) => {
      // The load is done: sort once into the index, in memory where it fits.
      await client.query(`SET LOCAL maintenance_work_mem = '256MB'`);
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${partitionName(runId)}_key ON ${table} (key)`);
    });
  } catch (err) {
    if ((err as { code?: string }).code === '23505') {
      const dup = await pool.query<{ key: string }>(`SELECT key FROM ${table} GROUP BY key HAVING count(*) > 1 LIMIT 1`);
      throw new InputError(
        `${where}: key ${dup.rows[0]?.key ?? '?'} appears more than once on ${info.date}; the source key must be unique per date`,
        { cause: err },
      );
    }
    throw err;
  }
  await pool.query(`ANALYZE ${table}`);
  // The table must hold exactly what the chunks say they wrote (a cheap index-only count).
  const stored = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  if (Number(stored.rows[0]!.n) !== t.written) {
    throw new RunError(runId, `${where}: the run's table holds ${stored.rows[0]!.n} rows but its chunks wrote ${t.written}`);
  }
  const chunkStats = await pool.query<{ stats: Parameters<typeof mergeStats>[0][number] }>(
    'SELECT stats FROM prescore.run_chunks WHERE run_id = $1::bigint AND stats IS NOT NULL',
    [runId],
  );
  const merged = mergeStats(chunkStats.rows.map((r) => r.stats));

  const previous = await withTransaction(pool, async (client) => {
    const locked = await client.query<{ status: string }>('SELECT status FROM prescore.runs WHERE id = $1::bigint FOR UPDATE', [
      runId,
    ]);
    if (locked.rows[0]?.status !== 'finalizing') {
      throw new RunError(runId, `${where}: was ${locked.rows[0]?.status ?? 'deleted'} while finalizing; not published`);
    }
    await client.query(`ALTER TABLE prescore.predictions ATTACH PARTITION ${table} FOR VALUES IN (${BigInt(runId)})`);
    await client.query('DELETE FROM prescore.feature_stats WHERE run_id = $1::bigint', [runId]);
    for (const [feature, s] of merged) {
      const mean = s.count ? s.sum / s.count : null;
      const variance = s.count > 1 && mean !== null ? Math.max(0, (s.sumSq - s.count * mean * mean) / (s.count - 1)) : null;
      await client.query(
        `INSERT INTO prescore.feature_stats (run_id, feature, count, nulls, mean, stddev, min, max)
         VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8)`,
        [
          runId,
          feature,
          s.count,
          s.nulls,
          mean,
          variance === null ? null : Math.sqrt(variance),
          s.count ? s.min : null,
          s.count ? s.max : null,
        ],
      );
    }
    const prev = await client.query<{ run_id: string }>(
      'SELECT run_id::text FROM prescore.serving WHERE job = $1 AND date = $2::date FOR UPDATE',
      [info.job, info.date],
    );
    await client.query(
      `INSERT INTO prescore.serving (job, date, run_id) VALUES ($1, $2::date, $3::bigint)
       ON CONFLICT (job, date) DO UPDATE SET run_id = excluded.run_id, published_at = now()`,
      [info.job, info.date, runId],
    );
    if (prev.rows[0]) {
      await client.query(`UPDATE prescore.runs SET status = 'superseded' WHERE id = $1::bigint`, [prev.rows[0].run_id]);
    }
    await client.query(
      `UPDATE prescore.runs SET status = 'published', published_at = now(), finished_at = now(), heartbeat_at = now(),
              rows_read = $2, rows_written = $3, rows_rejected = $4, error = NULL
        WHERE id = $1::bigint`,
      [runId, t.read, t.written, t.rejected],
    );
    await client.query('SELECT pg_notify($1, $2)', [PUBLISH_CHANNEL, JSON.stringify({ job: info.job, date: info.date, runId })]);
    return prev.rows[0]?.run_id;
  });
  if (previous === 'already') return;
  log.info({ runId, job: info.job, date: info.date, previous }, 'published');
  await dropExpired(pool, info.job, info.date, keepRuns, log);
  if (retainDays !== undefined) await dropOldDates(pool, info.job, retainDays, log);
}

/**
 * Drops the predictions of runs of (job, date) that no reader can reach any more: failed and
 * cancelled runs older than the one just published, and superseded runs beyond keepRuns.
 */
/**
 * Retention by age: dates older than the job's newest published date minus retainDays stop
 * being served (their pointer is removed first, in one statement) and their runs' tables go.
 */
export async function dropOldDates(pool: Pool, job: string, retainDays: number, log: Logger): Promise<void> {
  const { rows } = await pool.query<{ date: string }>(
    `DELETE FROM prescore.serving
      WHERE job = $1 AND date < (SELECT max(date) FROM prescore.serving WHERE job = $1) - $2::int
      RETURNING date::text`,
    [job, retainDays],
  );
  if (rows.length === 0) return;
  // Readers (the API's pointer cache) reload the job's pointers on this channel.
  await pool.query('SELECT pg_notify($1, $2)', [PUBLISH_CHANNEL, JSON.stringify({ job, runId: null })]);
  for (const { date } of rows) {
    await pool.query(
      `UPDATE prescore.runs SET status = 'superseded' WHERE job = $1 AND date = $2::date AND status = 'published'`,
      [job, date],
    );
    // Not a run still in flight for that date (a backfill): it finishes, and a later publish drops it.
    const runs = await pool.query<{ id: string }>(
      `SELECT id::text FROM prescore.runs WHERE job = $1 AND date = $2::date AND status NOT IN ('running', 'finalizing')`,
      [job, date],
    );
    await dropRuns(
      pool,
      runs.rows.map((r) => r.id),
      log,
    );
    log.info({ job, date, retainDays }, 'date past retention dropped');
  }
}

export async function dropExpired(pool: Pool, job: string, date: string, keepRuns: number, log: Logger): Promise<void> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id::text FROM (
        SELECT id, status, row_number() OVER (ORDER BY id DESC) AS n
          FROM prescore.runs WHERE job = $1 AND date = $2::date AND status IN ('published', 'superseded')) r
      WHERE n > $3
     UNION ALL
     SELECT id::text FROM prescore.runs
      WHERE job = $1 AND date = $2::date AND status IN ('failed', 'cancelled')
        AND id < (SELECT run_id FROM prescore.serving WHERE job = $1 AND date = $2::date)`,
    [job, date, keepRuns],
  );
  await dropRuns(
    pool,
    rows.map((r) => r.id),
    log,
  );
}

/** Drops runs' predictions tables (detached first if attached) and their reject rows. */
async function dropRuns(pool: Pool, ids: string[], log: Logger): Promise<void> {
  for (const id of new Set(ids)) {
    const table = `prescore.${partitionName(id)}`;
    const attached = await pool.query(`SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)`, [table]);
    if (attached.rowCount) {
      // Dropping an attached partition would lock the whole predictions table against readers;
      // detaching it concurrently first does not (PostgreSQL 14+).
      await pool.query(`ALTER TABLE prescore.predictions DETACH PARTITION ${table} CONCURRENTLY`).catch(async () => {
        await pool.query(`ALTER TABLE prescore.predictions DETACH PARTITION ${table}`);
      });
    }
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.query(`DELETE FROM prescore.rejects WHERE run_id = $1::bigint`, [id]);
    log.debug({ runId: id }, 'dropped expired run predictions');
  }
}
