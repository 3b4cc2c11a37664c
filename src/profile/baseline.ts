import type { Pool } from '../db/pool.js';
import { namedProfile, previousPublished, runProfile } from '../db/sql/profiles.js';
import type { ColumnProfile } from './profile.js';

export interface Baseline {
  /** `previous`, `run` or `profile`. */
  kind: string;
  /** The run id or profile name; null when there is none yet (a job's first run). */
  ref: string | null;
  columns: ColumnProfile[];
}

/**
 * What a run's drift is measured against (the job's `monitor.baseline`): the job's previous
 * published run (the default), a pinned run, or a named profile made from training data.
 * A first run has no previous one: an empty baseline, nothing to compare, nothing held.
 */
export async function resolveBaseline(pool: Pool, job: string, runId: string, spec: string): Promise<Baseline> {
  if (spec.startsWith('profile:')) {
    const name = spec.slice(8);
    const p = await namedProfile<ColumnProfile[]>(pool, name);
    return { kind: 'profile', ref: name, columns: p?.columns ?? [] };
  }
  const id = spec.startsWith('run:') ? spec.slice(4) : (await previousPublished(pool, job, runId))?.id;
  if (id === undefined) return { kind: 'previous', ref: null, columns: [] };
  const p = await runProfile<ColumnProfile[]>(pool, id);
  return { kind: spec.startsWith('run:') ? 'run' : 'previous', ref: id, columns: p?.columns ?? [] };
}
