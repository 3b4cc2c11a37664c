import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { checkDate } from '../dates.js';
import { MAX_NAME_LENGTH, NAME_PATTERN, NAME_RULE } from '../names.js';
import { GATES, type Gate, type GateName } from '../profile/gates.js';
import { splitProblems, splitSchema } from '../serving/split.js';

const name = z.string().max(MAX_NAME_LENGTH).regex(NAME_PATTERN, `must match ${NAME_RULE}`);
const MODEL_REF = new RegExp(`^${NAME_PATTERN.source.slice(1, -1)}@${NAME_PATTERN.source.slice(1, -1)}$`);

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function calendarDate(date: string): boolean {
  try {
    checkDate(date);
    return true;
  } catch {
    return false;
  }
}

const CRON_FIELDS: Record<string, string> = {
  '0-59': 'minute',
  '0-23': 'hour',
  '1-31': 'day of month',
  '1-12': 'month',
  '0-7': 'weekday',
};

/** Why a cron expression is refused, or null: names the field and its range ("hour 25 is out of range 0-23"). */
export function cronProblem(expr: string): string | null {
  if (expr.trim().split(/\s+/).length !== 5)
    return 'must be a 5-field cron expression (minute hour day month weekday), e.g. "0 2 * * *"';
  try {
    CronExpressionParser.parse(expr, { tz: 'UTC' });
    return null;
  } catch (err) {
    const m = /got value (\S+) expected range (\d+-\d+)/.exec((err as Error).message);
    if (m) return `${CRON_FIELDS[m[2]!] ?? 'a field'} ${m[1]} is out of range ${m[2]} in "${expr}"`;
    return `"${expr}" is not a valid cron expression: ${(err as Error).message}`;
  }
}

const BASELINE = new RegExp(`^(previous|run:[1-9][0-9]{0,18}|profile:${NAME_PATTERN.source.slice(1, -1)})$`);

/** A gate: a threshold (blocking), or {threshold, action}. */
function gate(max: number) {
  const threshold = z.number().min(0).max(max);
  return z
    .union([threshold, z.object({ threshold, action: z.enum(['block', 'warn']).default('block') }).strict()])
    .transform((v): Gate => (typeof v === 'number' ? { threshold: v, action: 'block' } : v));
}

function httpUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `must be an http:// or https:// URL (got ${JSON.stringify(url)})`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return `must be an http:// or https:// URL (got ${JSON.stringify(url)})`;
  }
  return null;
}

/** Webhooks: one URL or a list; stored as a list. */
const notify = z
  .union([z.string(), z.array(z.string()).min(1, 'must list at least one URL')])
  .superRefine((v, ctx) => {
    (typeof v === 'string' ? [v] : v).forEach((url, i) => {
      const problem = httpUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem, path: typeof v === 'string' ? [] : [i] });
    });
  })
  .transform((v) => (typeof v === 'string' ? [v] : v));

/** Challengers a job may list: slots 1..3 of prescore.run_models (migrations/007_challengers.sql). */
export const MAX_CHALLENGERS = 3;

/** Generous: a chunk of 50,000 rows takes seconds; one of a million rows of a big model, minutes. */
export const DEFAULT_CHUNK_TIMEOUT_SECONDS = 900;

export const jobSchema = z
  .object({
    name,
    model: z.string().regex(MODEL_REF, 'must be name@alias or name@version, e.g. "churn@champion"'),
    /**
     * Up to MAX_CHALLENGERS more models scored in the same pass as `model`, on the same rows,
     * with the same features and output mapping (see runs/chunk.ts); compared with
     * `prescore runs compare`. Served answers stay the champion's.
     */
    challengers: z
      .array(z.string().regex(MODEL_REF, 'must be name@alias or name@version, e.g. "churn@challenger" or "churn@7"'))
      .superRefine((refs, ctx) => {
        if (refs.length > MAX_CHALLENGERS) {
          ctx.addIssue({
            code: 'custom',
            message: `lists ${refs.length} models; at most ${MAX_CHALLENGERS} challengers are scored with the champion: keep the ${MAX_CHALLENGERS} you want to compare`,
          });
        }
        refs.forEach((ref, i) => {
          if (refs.indexOf(ref) < i) {
            ctx.addIssue({
              code: 'custom',
              path: [i],
              message: `"${ref}" is listed twice (also challengers[${refs.indexOf(ref)}]): list each challenger once`,
            });
          }
        });
      })
      .optional(),
    description: z.string().optional(),
    schedule: z
      .object({
        cron: z.string().superRefine((expr, ctx) => {
          const problem = cronProblem(expr);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
        timezone: z.string().default('UTC').refine(validTimeZone, 'must be an IANA time zone, e.g. "Europe/Berlin"'),
        /** Which partition a fire scores: the fire's local date plus this many days (-1: yesterday). */
        dateOffsetDays: z.number().int().min(-366).max(366).default(0),
        /** After downtime, how many missed dates the scheduler catches up. */
        catchUpDays: z.number().int().min(0).max(366).default(3),
        /**
         * The first partition date the schedule scores. Without it, a new job scores only the
         * dates of fires after the scheduler first saw it (or after its first run).
         */
        startDate: z.string().refine(calendarDate, 'must be a calendar date in YYYY-MM-DD form, e.g. "2026-11-23"').optional(),
        /**
         * Unset: missed dates after the job's start are caught up, but not those of a pause.
         * true: also the dates a pause skipped. false: only the newest due date fires.
         */
        catchUp: z.boolean().optional(),
      })
      .strict()
      .optional(),
    source: z
      .object({
        /** A table or view, `table` or `schema.table`. */
        table: z.string().min(1).optional(),
        /** Or a SELECT whose output columns include key, partition and features (run read-only). */
        query: z.string().min(1).optional(),
        key: z.string().min(1),
        partition: z.string().min(1),
        features: z
          .array(z.string().min(1))
          .min(1, 'must list at least one feature column')
          .refine((f) => new Set(f).size === f.length, 'must not list a column twice'),
      })
      .strict()
      .refine((s) => (s.table === undefined) !== (s.query === undefined), {
        message: 'give exactly one of table or query',
        path: ['table'],
      }),
    /** What really happened, for `prescore evaluate` (src/outcomes/): key, date and outcome columns of a table or query. */
    outcomes: z
      .object({
        table: z.string().min(1).optional(),
        query: z.string().min(1).optional(),
        key: z.string().min(1),
        date: z.string().min(1),
        outcome: z.string().min(1),
        /** Default: decided from the job's output mapping and model (src/outcomes/kind.ts). */
        kind: z.enum(['classifier', 'regressor']).optional(),
      })
      .strict()
      .refine((s) => (s.table === undefined) !== (s.query === undefined), {
        message: 'give exactly one of table or query',
        path: ['table'],
      })
      .optional(),
    /**
     * Model input name -> the source.features columns it takes, in order ([batch, columns]); for
     * models with several inputs (see models/inputs.ts). Without it a single-input model takes
     * every feature.
     */
    inputs: z
      .record(
        z.string().min(1),
        z
          .array(z.string().min(1))
          .min(1, 'must list at least one column')
          .refine((c) => new Set(c).size === c.length, 'must not list a column twice'),
      )
      .refine((m) => Object.keys(m).length > 0, 'must map at least one model input')
      .optional(),
    output: z
      .object({ score: z.string().min(1), label: z.string().min(1), outputs: z.string().min(1) })
      .partial()
      .strict()
      .optional(),
    chunkRows: z.number().int().min(1000).max(1_000_000).default(50_000),
    /**
     * A chunk not done after this long (a model that never returns, a database that hangs
     * without an error) is abandoned, its writes rolled back, and retried like a transient failure.
     */
    chunkTimeoutSeconds: z.number().int().min(5).max(86_400).default(DEFAULT_CHUNK_TIMEOUT_SECONDS),
    onBadRow: z.enum(['reject', 'fail']).default('reject'),
    maxRejectRate: z.number().min(0).max(1).default(0.05),
    keepRuns: z.number().int().min(1).max(100).default(2),
    /** Dates older than the newest published date minus this many days stop being served and are dropped. Unset: kept. */
    retainDays: z.number().int().min(1).max(36600).optional(),
    monitor: z
      .object({
        /** What drift is measured against: the previous published run, a run, or a named profile. */
        baseline: z
          .string()
          .regex(BASELINE, 'must be "previous", "run:<id>" or "profile:<name>" (see prescore profiles list)')
          .default('previous'),
        /** Profile features and outputs while scoring (false: no profiles, no drift, no gates). */
        profile: z.boolean().default(true),
      })
      .strict()
      .default({ baseline: 'previous', profile: true }),
    /**
     * How the read API answers the job. `onMiss`: what it does for a key the served run lacks
     * (src/api/miss.ts, src/api/late.ts; off: 404). `split`: A/B serving by key bucket (src/serving/split.ts).
     */
    serving: z
      .object({ onMiss: z.enum(['off', 'compute', 'enqueue']).default('off'), split: splitSchema.optional() })
      .strict()
      .optional(),
    /**
     * Incremental runs (src/runs/incremental.ts): score only the rows that changed since the
     * previous published run of the job and carry the others over from it, in PostgreSQL.
     * `changedSince`: a timestamp column of the source, set when a row's features change;
     * `mode: "hash"`: a hash of each row's features, stored per run, compared with the previous.
     */
    incremental: z
      .union(
        [
          z
            .object({
              changedSince: z.string().min(1),
              /** Rows changed up to this long before the previous run began count as changed too (clock skew of writers). */
              lookbackSeconds: z.number().int().min(0).max(86_400).default(0),
            })
            .strict(),
          z.object({ mode: z.literal('hash') }).strict(),
        ],
        { error: 'must be {"changedSince": "<timestamp column>"} or {"mode": "hash"}' },
      )
      .optional(),
    /** Webhooks POSTed a JSON event when a run fails, is held or is published (src/notify/). */
    notify: notify.optional(),
    /** Thresholds checked before publish (see profile/gates.ts); absent: DEFAULT_GATES, warn only. */
    gates: z
      .object(
        Object.fromEntries(Object.entries(GATES).map(([name, g]) => [name, gate(g.max)])) as Record<
          GateName,
          ReturnType<typeof gate>
        >,
      )
      .partial()
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    spec.challengers?.forEach((ref, i) => {
      if (ref === spec.model) {
        ctx.addIssue({
          code: 'custom',
          path: ['challengers', i],
          message: `"${ref}" is the champion (model): a challenger must be another model or version; remove it`,
        });
      }
    });
    for (const [path, message] of splitProblems(spec)) ctx.addIssue({ code: 'custom', path, message });
  });

export type JobSpec = z.output<typeof jobSchema>;

/** One line per problem: `field: message`. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    // `challengers[1]`, `source.features[0]`: list items as check.ts names them.
    const field =
      issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i > 0 ? '.' : ''}${String(p)}`)).join('') || '(file)';
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message =
        issue.path[0] === 'gates'
          ? `unknown gate(s) ${issue.keys.join(', ')}; the gates are ${Object.keys(GATES).join(', ')}`
          : `unknown field(s) ${issue.keys.join(', ')}`;
    }
    if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) message = 'is required';
    if (issue.code === 'too_small' && issue.origin === 'number') message = `must be at least ${issue.minimum}`;
    if (issue.code === 'too_big' && issue.origin === 'number') message = `must be at most ${issue.maximum}`;
    return `${field}: ${message}`;
  });
}
