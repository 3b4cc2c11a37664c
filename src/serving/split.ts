import crypto from 'node:crypto';
import { z } from 'zod';

/**
 * A/B serving: a job's `serving.split` sends each key to the champion or one of its
 * challengers by a bucket anyone can recompute from (job, key) alone. Pure: the job file in,
 * the split out; the read API (src/api/variants.ts) does the serving.
 */

/** Buckets: a split is in whole percentages, so 100 buckets. */
export const BUCKETS = 100;

/**
 * The bucket of a key: the first 4 bytes of sha256(job || "\n" || key), both UTF-8, read as a
 * big-endian unsigned 32-bit integer, modulo 100. `key` is the key as the API returns it (the
 * key column's text form: `42`, not `42.0`). The README gives the same in SQL and Python;
 * BUCKET_SQL is the SQL, tested against this.
 */
export function bucketOf(job: string, key: string): number {
  return crypto.createHash('sha256').update(`${job}\n${key}`, 'utf8').digest().readUInt32BE(0) % BUCKETS;
}

/** One model a key can be answered from: the champion (`model`) or a challenger. */
export interface Variant {
  /** What answers and metrics call it: "champion", a challenger's alias or version part, or its full reference. */
  name: string;
  /** The model reference as the job file gives it: "churn@challenger". */
  ref: string;
  /** The job field that names it: `model`, `challengers[0]`. */
  field: string;
  champion: boolean;
}

/** A job's split, resolved: which variant answers each bucket. */
export interface Split {
  /** The variants with a share, in bucket order, with their first and last bucket. */
  ranges: { variant: Variant; share: number; from: number; to: number }[];
  /** byBucket[b]: the variant answering bucket b. */
  byBucket: Variant[];
}

/** The part after `@`: `churn@challenger` → `challenger`, `churn@7` → `7`. */
function shortName(ref: string): string {
  return ref.slice(ref.indexOf('@') + 1);
}

/**
 * The job's variants: the champion, named `champion`, then each challenger in the job's order,
 * named by its alias or version part (`churn@challenger` → `challenger`, `churn@7` → `7`),
 * unless that is `champion` or another challenger's part too: then by its full reference.
 */
export function jobVariants(spec: { model: string; challengers?: readonly string[] | undefined }): Variant[] {
  const refs = spec.challengers ?? [];
  const shorts = refs.map(shortName);
  return [
    { name: 'champion', ref: spec.model, field: 'model', champion: true },
    ...refs.map((ref, i) => {
      const short = shorts[i]!;
      const unique = short !== 'champion' && shorts.indexOf(short) === shorts.lastIndexOf(short);
      return { name: unique ? short : ref, ref, field: `challengers[${i}]`, champion: false };
    }),
  ];
}

/** The variant a split or `?variant=` names: by its name, or by its full model reference. */
export function findVariant(variants: readonly Variant[], name: string): Variant | undefined {
  return variants.find((v) => v.name === name) ?? variants.find((v) => v.ref === name);
}

/** How the variants are listed in errors: `champion (model "churn@champion"), challenger (challengers[0] "churn@challenger")`. */
export function describeVariants(variants: readonly Variant[]): string {
  return variants.map((v) => `${v.name} (${v.field} "${v.ref}")`).join(', ');
}

/**
 * `serving.split`: {variant: percent}. The shape only (whole numbers 0..100 adding up to 100);
 * that each name is a model of the job is checked with the job (splitProblems).
 */
export const splitSchema = z
  .record(z.string(), z.unknown())
  .superRefine((split, ctx) => {
    let total = 0;
    let numbers = true;
    for (const [name, share] of Object.entries(split)) {
      if (typeof share !== 'number' || !Number.isInteger(share) || share < 0 || share > BUCKETS) {
        numbers = false;
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: `must be a whole percentage from 0 to 100 (got ${JSON.stringify(share)}): the shares are integer percentages of the keys`,
        });
      } else total += share;
    }
    if (numbers && total !== BUCKETS) {
      const names = Object.keys(split);
      ctx.addIssue({
        code: 'custom',
        message:
          names.length === 0
            ? 'lists no variant: give each variant its percentage of the keys, e.g. {"champion": 80, "challenger": 20}'
            : `the shares add up to ${total}, not 100: make them add up to exactly 100 (e.g. {"champion": 80, "challenger": 20})`,
      });
    }
  })
  .transform((split) => split as Record<string, number>);

/** Problems of a job's split against its models, as [path under the job, message]. */
export function splitProblems(spec: {
  model: string;
  challengers?: readonly string[] | undefined;
  serving?: { split?: Record<string, number> | undefined } | undefined;
}): [path: (string | number)[], message: string][] {
  const split = spec.serving?.split;
  if (!split) return [];
  const variants = jobVariants(spec);
  const problems: [(string | number)[], string][] = [];
  const seen = new Map<Variant, string>();
  for (const name of Object.keys(split)) {
    const v = findVariant(variants, name);
    if (!v) {
      const suggestion = name.includes('@')
        ? `add "${name}" to challengers`
        : `add the model to challengers (e.g. "${spec.model.slice(0, spec.model.indexOf('@'))}@${name}")`;
      problems.push([
        ['serving', 'split', name],
        `names no model of the job; the variants are ${describeVariants(variants)}: ${suggestion}, or remove it from the split`,
      ]);
      continue;
    }
    const before = seen.get(v);
    if (before !== undefined) {
      problems.push([['serving', 'split', name], `is ${v.name} again (also listed as "${before}"): list each variant once`]);
    }
    seen.set(v, name);
  }
  return problems;
}

/**
 * The split of a valid job, or null without one. Buckets go to the variants in the job's
 * order, not the split's: the champion first, then the challengers as `challengers` lists
 * them, each taking as many buckets as its share (a variant at 0 takes none). With
 * {"champion": 80, "challenger": 20}: buckets 0-79 the champion, 80-99 the challenger.
 * (The split's own key order cannot decide: JSON objects put integer-like keys such as "7"
 * first, whatever order the file wrote them in.)
 */
export function resolveSplit(spec: Parameters<typeof splitProblems>[0]): Split | null {
  const split = spec.serving?.split;
  if (!split) return null;
  const variants = jobVariants(spec);
  const shares = new Map<Variant, number>();
  for (const [name, share] of Object.entries(split)) {
    const v = findVariant(variants, name);
    if (!v) throw new Error(`serving.split names no model of the job: ${name}`);
    shares.set(v, share);
  }
  const ranges: Split['ranges'] = [];
  const byBucket: Variant[] = [];
  for (const v of variants) {
    const share = shares.get(v) ?? 0;
    if (share === 0) continue;
    ranges.push({ variant: v, share, from: byBucket.length, to: byBucket.length + share - 1 });
    for (let i = 0; i < share; i++) byBucket.push(v);
  }
  if (byBucket.length !== BUCKETS) throw new Error(`serving.split adds up to ${byBucket.length}, not ${BUCKETS}`);
  return { ranges, byBucket };
}
