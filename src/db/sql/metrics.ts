import type { Queryable } from '../pool.js';

/** What `prescore worker` and `prescore scheduler` report about the whole cluster, read at scrape time. */
export interface ClusterSnapshot {
  /** Runs per (job, status). */
  runs: { job: string; status: string; count: number }[];
  /** Seconds since each job's newest published run was published. */
  lastPublish: { job: string; ageSeconds: number }[];
  /** Drift of each job's newest run that has a report: the largest feature PSI and the score's PSI. */
  drift: { job: string; featurePsiMax: number | null; scorePsi: number | null }[];
}

// One round trip. The drift report is `{columns: [{column, kind, psi, ...}]}` (profile/drift.ts);
// the score is the output column named `score`.
const SNAPSHOT = `
  SELECT 'runs' AS what, job, status, count(*)::float8 AS a, NULL::float8 AS b
    FROM prescore.runs GROUP BY job, status
  UNION ALL
  SELECT 'publish', job, NULL, extract(epoch FROM now() - max(published_at))::float8, NULL
    FROM prescore.runs WHERE published_at IS NOT NULL GROUP BY job
  UNION ALL
  SELECT 'drift', last.job, NULL,
         (SELECT max((c->>'psi')::float8) FROM jsonb_array_elements(last.report->'columns') c
           WHERE c->>'kind' = 'feature'),
         (SELECT max((c->>'psi')::float8) FROM jsonb_array_elements(last.report->'columns') c
           WHERE c->>'kind' = 'output' AND c->>'column' = 'score')
    FROM (SELECT DISTINCT ON (r.job) r.job, rr.report
            FROM prescore.runs r JOIN prescore.run_reports rr ON rr.run_id = r.id
           ORDER BY r.job, r.id DESC) last`;

interface Row {
  what: 'runs' | 'publish' | 'drift';
  job: string;
  status: string | null;
  a: number | null;
  b: number | null;
}

export async function clusterSnapshot(db: Queryable): Promise<ClusterSnapshot> {
  const { rows } = await db.query<Row>({ name: 'prescore_cluster_snapshot', text: SNAPSHOT });
  const snapshot: ClusterSnapshot = { runs: [], lastPublish: [], drift: [] };
  for (const r of rows) {
    if (r.what === 'runs') snapshot.runs.push({ job: r.job, status: r.status!, count: r.a ?? 0 });
    else if (r.what === 'publish') snapshot.lastPublish.push({ job: r.job, ageSeconds: Math.max(0, r.a ?? 0) });
    else snapshot.drift.push({ job: r.job, featurePsiMax: r.a, scorePsi: r.b });
  }
  return snapshot;
}
