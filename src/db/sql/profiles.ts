import type { Queryable } from '../pool.js';

/** `prescore.profiles` and `prescore.run_reports`: what drift is measured on, and its outcome. */
export interface StoredProfile<Columns> {
  id: string;
  name: string | null;
  runId: string | null;
  job: string;
  source: string;
  rows: number;
  columns: Columns;
  createdAt: string;
}

interface Row<Columns> {
  id: string;
  name: string | null;
  run_id: string | null;
  job: string;
  source: string;
  rows: string;
  columns: Columns;
  created_at: Date;
}

function toProfile<C>(r: Row<C>): StoredProfile<C> {
  return {
    id: r.id,
    name: r.name,
    runId: r.run_id,
    job: r.job,
    source: r.source,
    rows: Number(r.rows),
    columns: r.columns,
    createdAt: r.created_at.toISOString(),
  };
}

const SELECT = 'SELECT id::text, name, run_id::text, job, source, rows, columns, created_at FROM prescore.profiles';

export async function saveRunProfile(db: Queryable, runId: string, job: string, rows: number, columns: unknown): Promise<void> {
  await db.query(
    `INSERT INTO prescore.profiles (run_id, job, source, rows, columns) VALUES ($1::bigint, $2, 'run', $3, $4)
     ON CONFLICT (run_id) DO UPDATE SET rows = excluded.rows, columns = excluded.columns`,
    [runId, job, rows, JSON.stringify(columns)],
  );
}

export async function saveNamedProfile(
  db: Queryable,
  p: { name: string; job: string; source: string; rows: number; columns: unknown },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO prescore.profiles (name, job, source, rows, columns) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING`,
    [p.name, p.job, p.source, p.rows, JSON.stringify(p.columns)],
  );
  return (rowCount ?? 0) > 0;
}

export async function runProfile<C>(db: Queryable, runId: string): Promise<StoredProfile<C> | undefined> {
  const { rows } = await db.query<Row<C>>(`${SELECT} WHERE run_id = $1::bigint`, [runId]);
  return rows[0] && toProfile(rows[0]);
}

export async function namedProfile<C>(db: Queryable, name: string): Promise<StoredProfile<C> | undefined> {
  const { rows } = await db.query<Row<C>>(`${SELECT} WHERE name = $1`, [name]);
  return rows[0] && toProfile(rows[0]);
}

export async function listNamedProfiles(db: Queryable): Promise<StoredProfile<unknown>[]> {
  const { rows } = await db.query<Row<unknown>>(`${SELECT} WHERE name IS NOT NULL ORDER BY name`);
  return rows.map(toProfile);
}

export async function deleteNamedProfile(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM prescore.profiles WHERE name = $1', [name]);
  return (rowCount ?? 0) > 0;
}

/** The job's newest published run other than `exceptRun`, with its rows read: the "previous" baseline. */
export async function previousPublished(
  db: Queryable,
  job: string,
  exceptRun: string,
): Promise<{ id: string; rows: number } | undefined> {
  const { rows } = await db.query<{ id: string; rows_read: string }>(
    `SELECT id::text, rows_read FROM prescore.runs
      WHERE job = $1 AND status IN ('published', 'superseded') AND id <> $2::bigint
      ORDER BY published_at DESC NULLS LAST, id DESC LIMIT 1`,
    [job, exceptRun],
  );
  return rows[0] && { id: rows[0].id, rows: Number(rows[0].rows_read) };
}

export interface StoredReport<Report, Breach> {
  runId: string;
  baseline: { kind: string; ref: string | null; rows: number | null };
  report: Report;
  breaches: Breach[];
  createdAt: string;
}

export async function saveReport(
  db: Queryable,
  runId: string,
  baseline: unknown,
  report: unknown,
  breaches: unknown,
): Promise<void> {
  await db.query(
    `INSERT INTO prescore.run_reports (run_id, baseline, report, breaches) VALUES ($1::bigint, $2, $3, $4)
     ON CONFLICT (run_id) DO UPDATE SET baseline = excluded.baseline, report = excluded.report, breaches = excluded.breaches,
                                         created_at = now()`,
    [runId, JSON.stringify(baseline), JSON.stringify(report), JSON.stringify(breaches)],
  );
}

export async function loadReport<R, B>(db: Queryable, runId: string): Promise<StoredReport<R, B> | undefined> {
  const { rows } = await db.query<{ baseline: StoredReport<R, B>['baseline']; report: R; breaches: B[]; created_at: Date }>(
    'SELECT baseline, report, breaches, created_at FROM prescore.run_reports WHERE run_id = $1::bigint',
    [runId],
  );
  const r = rows[0];
  return r && { runId, baseline: r.baseline, report: r.report, breaches: r.breaches, createdAt: r.created_at.toISOString() };
}

/** The gates each of these runs broke (runs without a report are absent). */
export async function reportBreaches<B>(db: Queryable, runIds: readonly string[]): Promise<Map<string, B[]>> {
  if (runIds.length === 0) return new Map();
  const { rows } = await db.query<{ run_id: string; breaches: B[] }>(
    'SELECT run_id::text, breaches FROM prescore.run_reports WHERE run_id = ANY ($1::bigint[])',
    [runIds],
  );
  return new Map(rows.map((r) => [r.run_id, r.breaches]));
}
