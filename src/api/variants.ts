import { Counter, type Registry } from 'prom-client';
import type { Pool } from '../db/pool.js';
import { listRunModels } from '../db/sql/run-models.js';
import { CHALLENGER_LOOKUP, CHALLENGER_REJECTS } from '../db/sql/variants.js';
import { HttpError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { bucketOf, findVariant, jobVariants, type Variant } from '../serving/split.js';
import type { JobSplits, JobServing } from './job-splits.js';
import type { StoredPrediction } from './lookup.js';
import type { Answered } from './miss.js';
import type { Pointer } from './pointers.js';

/** How an answer names the model that gave it, under a split or `?variant=`. */
export interface VariantTag {
  /** The variant that answered. */
  variant: string;
  model: { name: string; version: number };
  /** On a fallback only: the variant the key was assigned (by bucket or `?variant=`)... */
  assigned?: string;
  /** ...and why the champion answered instead. */
  fallback?: string;
}

export type ServedPrediction = Answered & { variant?: VariantTag };

/** The champion's rows of keys from one run (stored, or computed on a miss), as the API's answer() finds them. */
export interface Found {
  pointer: Pointer;
  rows: Map<string, ServedPrediction>;
}

/** What a request asks of the variants, decided before any lookup. */
export interface VariantPlan {
  serving: JobServing;
  /** `?variant=`: every key from this variant. */
  forced: Variant | undefined;
}

interface RunSlot {
  slot: number;
  ref: string;
  model: { name: string; version: number };
}

const CHAMPION_ONLY: JobServing = { variants: jobVariants({ model: '' }), split: null };

/** Keys of one query at most (as the champion's lookups). */
const MAX_QUERY_KEYS = 256;
/** Runs whose models are remembered (a run's models never change). */
const MAX_RUNS = 512;

/**
 * A/B serving: answers each key from the variant its bucket (or `?variant=`) selects, from the
 * run the request resolved. The champion's rows come from the API's own lookup; a challenger's
 * from the same run's `challenger_predictions` by (run_id, slot). A key the challenger did not
 * score (rejected it, or the run did not score that challenger) is answered by the champion,
 * and the answer says so. A job with no split and no `?variant=` passes through untouched.
 */
export class Variants {
  private readonly runSlots = new Map<string, Promise<RunSlot[]>>();
  private readonly answers: Counter<'prescore_job' | 'variant' | 'assigned'>;
  private readonly counted = new Map<string, Counter.Internal>();
  private readonly pending = new Map<string, { runId: string; slot: number; keys: Set<string>; waiters: Waiter[] }>();
  private scheduled = false;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly splits: JobSplits | undefined,
    private readonly options: { registry: Registry; timeoutMs: number; current(pointer: Pointer): Promise<Pointer | undefined> },
  ) {
    this.answers = new Counter({
      name: 'prescore_variant_answers_total',
      help: 'keys answered under a split or ?variant=, by job, the variant that answered and the variant assigned (they differ on a fallback to the champion)',
      labelNames: ['prescore_job', 'variant', 'assigned'],
      registers: [options.registry],
    });
  }

  /**
   * What a request on `job` asks for, or undefined when it is answered as without variants:
   * no split and no `?variant=`. An unknown `?variant=` is a 400 naming the valid ones.
   */
  plan(job: string, variant: string | undefined): VariantPlan | undefined {
    const serving = this.splits?.get(job);
    if (variant === undefined) return serving?.split ? { serving, forced: undefined } : undefined;
    // Without a job file only the champion is known: the challengers are what the file lists.
    const known = serving ?? CHAMPION_ONLY;
    const forced = findVariant(known.variants, variant);
    if (!forced) {
      throw new HttpError(
        400,
        `variant "${variant.slice(0, 100)}" is not a variant of job "${job}": the variants are ${known.variants.map((v) => v.name).join(', ')}`,
      );
    }
    return { serving: known, forced };
  }

  /**
   * Tags the champion's rows and swaps in the challengers' for the keys assigned to them, all
   * from found.pointer's run. If a challenger lacks keys the champion has and the run was
   * replaced meanwhile (and maybe dropped), everything is answered again from the new run
   * (`again`), so one answer never mixes runs.
   */
  async apply<F extends Found>(
    plan: VariantPlan,
    first: F,
    keys: readonly string[],
    again: (p: Pointer) => Promise<F>,
  ): Promise<F> {
    let found = first;
    for (let attempt = 0; ; attempt++) {
      const result = await this.assign(plan, found, keys);
      if (result.complete || attempt === 2) return this.count(found.pointer.job, result.found);
      const fresh = await this.options.current(found.pointer).catch(() => undefined);
      if (!fresh || fresh.runId === found.pointer.runId) return this.count(found.pointer.job, result.found);
      found = await again(fresh);
    }
  }

  private count<F extends Found>(job: string, found: F): F {
    for (const row of found.rows.values()) {
      const tag = row.variant!;
      const assigned = tag.assigned ?? tag.variant;
      const id = `${job}\0${tag.variant}\0${assigned}`;
      let c = this.counted.get(id);
      if (!c) {
        c = this.answers.labels({ prescore_job: job, variant: tag.variant, assigned });
        this.counted.set(id, c);
      }
      c.inc();
    }
    return found;
  }

  private async assign<F extends Found>(
    plan: VariantPlan,
    found: F,
    keys: readonly string[],
  ): Promise<{ found: F; complete: boolean }> {
    const { pointer, rows } = found;
    const champion: VariantTag = { variant: 'champion', model: pointer.model };
    const out = new Map<string, ServedPrediction>();
    const bySlot = new Map<number, { variant: Variant; slot: RunSlot; keys: string[] }>();
    let slots: RunSlot[] | undefined;
    const fallback = (key: string, variant: Variant, why: string) => {
      const row = rows.get(key);
      if (row) out.set(key, { ...row, variant: { ...champion, assigned: variant.name, fallback: why } });
    };
    for (const key of new Set(keys)) {
      const variant = plan.forced ?? plan.serving.split!.byBucket[bucketOf(pointer.job, key)]!;
      if (variant.champion) {
        const row = rows.get(key);
        if (row) out.set(key, { ...row, variant: champion });
        continue;
      }
      slots ??= await this.slotsOf(pointer.runId);
      const slot = slots.find((s) => s.slot > 0 && s.ref === variant.ref);
      if (!slot) {
        fallback(
          key,
          variant,
          `run ${pointer.runId} did not score "${variant.ref}" (the job's challengers changed after it ran): the champion answers`,
        );
        continue;
      }
      let group = bySlot.get(slot.slot);
      if (!group) bySlot.set(slot.slot, (group = { variant, slot, keys: [] }));
      group.keys.push(key);
    }
    let complete = true;
    await Promise.all(
      [...bySlot.values()].map(async ({ variant, slot, keys: assigned }) => {
        const tag: VariantTag = { variant: variant.name, model: slot.model };
        const stored = await this.challengerRows(pointer.runId, slot.slot, assigned);
        const lacking = assigned.filter((k) => !stored.has(k));
        const reasons = lacking.length ? await this.rejects(pointer.runId, slot.slot, lacking) : new Map<string, string>();
        const who = `challenger "${variant.name}" (${slot.model.name} v${slot.model.version})`;
        for (const key of assigned) {
          const row = stored.get(key);
          if (row) {
            out.set(key, { ...row, variant: tag });
            continue;
          }
          const reason = reasons.get(key);
          if (reason !== undefined) fallback(key, variant, `${who} rejected this key: ${reason}`);
          else {
            // Neither stored nor rejected, yet the champion stored it: the run is being dropped.
            if (rows.get(key)?.source === undefined && rows.has(key)) complete = false;
            fallback(key, variant, `${who} has no prediction for this key`);
          }
        }
      }),
    );
    return { found: { ...found, rows: out }, complete };
  }

  private slotsOf(runId: string): Promise<RunSlot[]> {
    let slots = this.runSlots.get(runId);
    if (!slots) {
      if (this.runSlots.size >= MAX_RUNS) this.runSlots.clear();
      slots = listRunModels(this.pool, runId, this.options.timeoutMs).then(
        (models) => models.map(({ slot, ref, name, version }) => ({ slot, ref, model: { name, version } })),
        (err: unknown) => this.unavailable(err),
      );
      slots.catch(() => this.runSlots.delete(runId));
      this.runSlots.set(runId, slots);
    }
    return slots;
  }

  private async rejects(runId: string, slot: number, keys: string[]): Promise<Map<string, string>> {
    const rows = await this.query<[string, string]>(CHALLENGER_REJECTS, [runId, slot, keys]);
    return new Map(rows);
  }

  /**
   * A challenger's rows of keys: what the requests of one event-loop turn ask of one
   * (run, slot) goes out as one query (at most MAX_QUERY_KEYS keys a query).
   */
  private challengerRows(runId: string, slot: number, keys: string[]): Promise<Map<string, StoredPrediction>> {
    const id = `${runId}:${slot}`;
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(id);
      if (!batch) this.pending.set(id, (batch = { runId, slot, keys: new Set(), waiters: [] }));
      for (const k of keys) batch.keys.add(k);
      batch.waiters.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batches = [...this.pending.values()];
    this.pending.clear();
    for (const batch of batches) {
      const keys = [...batch.keys];
      const parts: Promise<[string, number | null, string | null, number[] | null][]>[] = [];
      for (let i = 0; i < keys.length; i += MAX_QUERY_KEYS) {
        parts.push(this.query(CHALLENGER_LOOKUP, [batch.runId, batch.slot, keys.slice(i, i + MAX_QUERY_KEYS)]));
      }
      Promise.all(parts).then(
        (results) => {
          const found = new Map<string, StoredPrediction>();
          for (const rows of results) for (const r of rows) found.set(r[0], { score: r[1], label: r[2], outputs: r[3] });
          for (const w of batch.waiters) w.resolve(found);
        },
        (err: unknown) => {
          for (const w of batch.waiters) w.reject(err);
        },
      );
    }
  }

  private async query<R>(statement: { name: string; text: string; rowMode: 'array' }, values: unknown[]): Promise<R[]> {
    try {
      const { rows } = await this.pool.query({
        ...statement,
        values,
        query_timeout: this.options.timeoutMs,
      } as typeof statement & {
        values: unknown[];
      });
      return rows as R[];
    } catch (err) {
      this.unavailable(err);
    }
  }

  private unavailable(err: unknown): never {
    this.log.error({ err: errorMessage(err) }, 'challenger lookup failed');
    throw new HttpError(503, 'the database is unavailable; retry later');
  }
}

/** `?variant=`: one name, or none. */
export function checkVariantParam(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new HttpError(
      400,
      `variant must be one variant name, e.g. variant=champion (got ${Array.isArray(value) ? 'several' : JSON.stringify(value)})`,
    );
  }
  return value;
}

/** The query of POST /v1/predictions/:job: `variant` only (what else it takes is in the body). */
export function batchVariant(query: Record<string, unknown> | undefined): string | undefined {
  for (const name of Object.keys(query ?? {})) {
    if (name !== 'variant') {
      throw new HttpError(
        400,
        `unknown query parameter "${name.slice(0, 40)}": the only ones are variant and wait; keys, asOf and fallback go in the JSON body`,
      );
    }
  }
  return checkVariantParam(query?.variant);
}

interface Waiter {
  resolve(rows: Map<string, StoredPrediction>): void;
  reject(err: unknown): void;
}
