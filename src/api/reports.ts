import type { Pool } from '../db/pool.js';
import { loadReport, type StoredReport } from '../db/sql/profiles.js';
import { getRun } from '../db/sql/run-info.js';

/** A run (the fields a report reader needs) and its drift report, if it has one. */
export async function runReport(
  pool: Pool,
  runId: string,
): Promise<
  | {
      run: { id: string; job: string; date: string; status: string; heldReason: string | null };
      report: StoredReport<unknown, unknown> | undefined;
    }
  | undefined
> {
  const run = await getRun(pool, runId);
  if (!run) return undefined;
  return {
    run: { id: run.id, job: run.job, date: run.date, status: run.status, heldReason: run.heldReason },
    report: await loadReport(pool, runId),
  };
}
