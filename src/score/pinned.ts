import type { Pool } from '../db/pool.js';
import { servedRunPlan } from '../db/sql/runs.js';
import type { ResolvedJob } from '../definitions/check.js';
import { ModelBytes } from '../models/bytes.js';
import type { ScoringModel } from './model.js';

/** A published run as it was planned: its resolved job (source, features, mapping) and its pinned model. */
export interface PinnedRun {
  runId: string;
  date: string;
  job: ResolvedJob;
  /** Whether the run rejected rows (else a missing key cannot be one of its rejects). */
  rejected: boolean;
  /** What the job's `serving.onMiss` was when the run was planned. */
  onMiss: 'off' | 'compute' | 'enqueue';
  /** Loaded on first use (only jobs that score on miss need the bytes). */
  model(): Promise<ScoringModel>;
  /** For a query source: its SELECT was accepted once as one statement (see readKeys). */
  checked: boolean;
}

/** Runs kept at most: the served runs of a few dozen jobs and dates. */
const MAX_RUNS = 64;

/**
 * The plan and the model version of each run the API answers from, by run id. A run's plan
 * never changes, so an entry never goes stale: a promotion of the job's alias after the run
 * changes what the next run pins, never this one. Model bytes are shared by sha256.
 */
export class PinnedRuns {
  private readonly runs = new Map<string, Promise<PinnedRun | undefined>>();
  constructor(
    private readonly pool: Pool,
    private readonly bytes = new ModelBytes(pool),
  ) {}

  /** The run's plan (undefined: the run is gone). Callers arriving together share one read. */
  get(runId: string): Promise<PinnedRun | undefined> {
    let p = this.runs.get(runId);
    if (p) return p;
    p = this.load(runId);
    this.runs.set(runId, p);
    p.then(
      (r) => r ?? this.runs.delete(runId),
      () => this.runs.delete(runId),
    );
    if (this.runs.size > MAX_RUNS) this.runs.delete(this.runs.keys().next().value!);
    return p;
  }

  private async load(runId: string): Promise<PinnedRun | undefined> {
    const plan = await servedRunPlan<ResolvedJob>(this.pool, runId);
    if (!plan) return undefined;
    const job = plan.spec;
    let model: Promise<ScoringModel> | undefined;
    return {
      runId,
      date: plan.date,
      rejected: plan.rejected,
      job,
      onMiss: job.spec.serving?.onMiss ?? 'off',
      checked: false,
      model: () => {
        model ??= this.bytes.get(job.model).then((bytes) => ({
          job: job.name,
          name: job.model.name,
          version: job.model.version,
          sha256: job.model.sha256,
          bytes,
          input: job.input,
          features: job.features.map((f) => f.name),
          mapping: job.mapping,
        }));
        model.catch(() => (model = undefined));
        return model;
      },
    };
  }
}
