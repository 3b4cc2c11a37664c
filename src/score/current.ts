import { feedsUnsupported } from '../models/inputs.js';
import type { Pool } from '../db/pool.js';
import { newestJobRun } from '../db/sql/runs.js';
import type { ResolvedJob } from '../definitions/check.js';
import { HttpError, InputError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { resolveOutputMapping } from '../models/output.js';
import { ModelBytes } from '../models/bytes.js';
import { resolveModel, type PinnedModel } from '../models/registry.js';
import { NUMERIC_INPUT_TYPES, type InputType } from '../models/signature.js';
import type { ScoringModel } from './model.js';

export interface CurrentModelsOptions {
  /** How long a job's resolved model answers before the alias is read again (default 1000). */
  ttlMs?: number;
  /** While the database cannot be read, the last resolution keeps answering for this long (default 30,000). */
  maxStaleMs?: number;
}

interface Entry {
  at: number;
  model: ScoringModel | undefined;
  refreshing: Promise<ScoringModel> | undefined;
}

/**
 * The model each job scores sent features with: what the job's `model` reference (e.g.
 * `churn@champion`) resolves to now, read again at most `ttlMs` after the last time, so a
 * promotion takes effect within a second. The job's features and output mapping are those of
 * its newest run (the job as it was last planned, checked against the catalog): the API needs
 * no job files. A promotion to a version with another signature is checked as `jobs validate`
 * would (the input, the mapping) and refused, naming the job, until the job fits it.
 */
export class CurrentModels {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly maxStaleMs: number;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    options: CurrentModelsOptions = {},
    private readonly bytes = new ModelBytes(pool),
  ) {
    this.ttlMs = options.ttlMs ?? 1000;
    this.maxStaleMs = options.maxStaleMs ?? 30_000;
  }

  async get(job: string): Promise<ScoringModel> {
    let e = this.entries.get(job);
    const now = Date.now();
    if (e?.model && now - e.at < this.ttlMs) return e.model;
    if (!e) {
      e = { at: 0, model: undefined, refreshing: undefined };
      this.entries.set(job, e);
    }
    const entry = e;
    // Requests arriving together share one resolution.
    entry.refreshing ??= this.resolve(job)
      .then((model) => {
        entry.model = model;
        entry.at = Date.now();
        return model;
      })
      .finally(() => (entry.refreshing = undefined));
    try {
      return await entry.refreshing;
    } catch (err) {
      if (err instanceof HttpError) {
        if (!entry.model) this.entries.delete(job);
        throw err;
      }
      if (entry.model && now - entry.at < this.maxStaleMs) {
        this.log.warn({ err: errorMessage(err), job }, 'could not read the current model; scoring with the one read last');
        return entry.model;
      }
      this.log.error({ err: errorMessage(err), job }, 'could not read the current model');
      throw new HttpError(503, 'the database is unavailable; retry later');
    }
  }

  private async resolve(job: string): Promise<ScoringModel> {
    const run = await newestJobRun<ResolvedJob>(this.pool, job);
    if (!run) {
      throw new HttpError(
        404,
        `job "${job}" has never run: the API learns a job's features and output mapping from its runs; run it once (prescore run ${job})`,
      );
    }
    const spec = run.spec;
    const unsupported = feedsUnsupported(spec, 'POST /v1/score');
    if (unsupported) throw new HttpError(409, unsupported);
    let pinned: PinnedModel;
    try {
      pinned = await resolveModel(this.pool, spec.spec.model);
    } catch (err) {
      if (err instanceof InputError) throw new HttpError(409, `job "${job}": model ${spec.spec.model}: ${err.message}`);
      throw err;
    }
    const fitted = pinned.sha256 === spec.model.sha256 ? { input: spec.input, mapping: spec.mapping } : fit(job, spec, pinned);
    return {
      job,
      name: pinned.name,
      version: pinned.version,
      sha256: pinned.sha256,
      bytes: await this.bytes.get(pinned),
      input: fitted.input,
      features: spec.features.map((f) => f.name),
      mapping: fitted.mapping,
    };
  }
}

/** The job's input and mapping checked against another version of its model than the run pinned. */
function fit(job: string, spec: ResolvedJob, m: PinnedModel): Pick<ScoringModel, 'input' | 'mapping'> {
  const problems: string[] = [];
  const inputs = m.signature.inputs;
  const inp = inputs[0];
  let input: ScoringModel['input'] | undefined;
  if (inputs.length !== 1 || !inp) problems.push(`it has ${inputs.length} inputs`);
  else if (!(NUMERIC_INPUT_TYPES as readonly string[]).includes(inp.type)) problems.push(`its input is ${inp.type}`);
  else if (inp.shape.length !== 2) problems.push(`its input has shape [${inp.shape.map((d) => d ?? '?').join(', ')}]`);
  else if (inp.shape[1] !== null && inp.shape[1] !== spec.features.length) {
    problems.push(`it takes ${inp.shape[1]} features per row, the job lists ${spec.features.length}`);
  } else input = { name: inp.name, type: inp.type as InputType, batch: inp.shape[0] ?? null };
  const { mapping, problems: mapped } = resolveOutputMapping(spec.spec.output, m.signature);
  problems.push(...mapped);
  if (problems.length > 0 || !input) {
    throw new HttpError(
      409,
      `job "${job}": ${spec.spec.model} is now ${m.name} v${m.version}, which does not fit the job: ${problems.join('; ')}; ` +
        `fix the job or the alias (prescore jobs validate ${job})`,
    );
  }
  return { input, mapping };
}
