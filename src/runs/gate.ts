import type { Pool } from '../db/pool.js';
import { previousPublished, saveReport, saveRunProfile } from '../db/sql/profiles.js';
import type { FeatureSummary } from '../db/sql/stats.js';
import type { Logger } from '../log.js';
import { resolveBaseline } from '../profile/baseline.js';
import { driftReport, type DriftReport } from '../profile/drift.js';
import { DEFAULT_GATES, checkGates, describeBreach, type Breach, type Gates } from '../profile/gates.js';
import { mean, stddev, type ColumnProfile } from '../profile/profile.js';
import { ProfileMerger } from '../profile/codec.js';
import { forEachChunkProfile } from '../db/sql/chunks.js';

export interface GateOutcome {
  profiles: ColumnProfile[];
  report: DriftReport;
  breaches: Breach[];
  /** Why the run is held (the blocking breaches), or null to publish it. */
  held: string | null;
}

/**
 * Before a run is published: merges its chunks' profiles, stores them (the next run's
 * baseline), measures drift against the job's baseline, checks the job's gates, and stores
 * the report. A breached blocking gate holds the run; warnings are logged.
 */
export async function gateRun(
  pool: Pool,
  run: { id: string; job: string; rowsRead: number; baseline: string; gates: Gates | undefined },
  log: Logger,
): Promise<GateOutcome> {
  const merger = new ProfileMerger();
  await forEachChunkProfile(pool, run.id, (buf) => merger.addEncoded(buf));
  const profiles = merger.result();
  await saveRunProfile(pool, run.id, run.job, run.rowsRead, profiles);
  const baseline = await resolveBaseline(pool, run.job, run.id, run.baseline);
  const previous = await previousPublished(pool, run.job, run.id);
  const report = driftReport(baseline.columns, profiles, { run: run.rowsRead, previous: previous?.rows ?? null });
  const breaches = checkGates(report, run.gates ?? DEFAULT_GATES);
  await saveReport(pool, run.id, { kind: baseline.kind, ref: baseline.ref, rows: previous?.rows ?? null }, report, breaches);
  const blocking = breaches.filter((b) => b.action === 'block');
  for (const b of breaches.filter((x) => x.action === 'warn')) {
    log.warn(
      { runId: run.id, job: run.job, gate: b.gate, column: b.column, value: b.value, threshold: b.threshold },
      'quality gate warning',
    );
  }
  return { profiles, report, breaches, held: blocking.length ? blocking.map(describeBreach).join('; ') : null };
}

/** The feature rows of `prescore.feature_stats`, from the run's profiles. */
export function featureSummaries(profiles: ColumnProfile[]): FeatureSummary[] {
  return profiles
    .filter((p) => p.kind === 'feature')
    .map((p) => ({
      feature: p.column,
      count: p.count,
      nulls: p.nulls,
      mean: mean(p),
      stddev: stddev(p),
      min: p.min,
      max: p.max,
    }));
}
