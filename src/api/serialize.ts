import type { Answered } from './miss.js';
import type { Pointer } from './pointers.js';
import type { VariantTag } from './variants.js';

/**
 * Response bodies written as strings. A batch of 100 is 100 items that share job, asOf, runId
 * and model: those are encoded once per run, not once per item, and no item object is built.
 * The field order is the documented one: job, key, asOf, runId, model, score, label, outputs.
 *
 * JSON has no NaN or Infinity: a model output that is not finite is written as null (as
 * JSON.stringify would).
 */
const heads = new WeakMap<Pointer, { job: string; run: string }>();

function head(pointer: Pointer): { job: string; run: string } {
  let h = heads.get(pointer);
  if (!h) {
    h = {
      job: `{"job":${JSON.stringify(pointer.job)},"key":`,
      run:
        `,"asOf":${JSON.stringify(pointer.date)},"runId":${JSON.stringify(pointer.runId)},` +
        `"model":${JSON.stringify({ name: pointer.model.name, version: pointer.model.version })},"score":`,
    };
    heads.set(pointer, h);
  }
  return h;
}

function num(v: number | null): string {
  return v !== null && Number.isFinite(v) ? String(v) : 'null';
}

function nums(v: number[] | null): string {
  if (v === null) return 'null';
  let s = '[';
  for (let i = 0; i < v.length; i++) s += (i ? ',' : '') + num(v[i]!);
  return s + ']';
}

/**
 * Under a split or `?variant=` (src/api/variants.ts): the model of the variant that answered,
 * then `variant` (and on a fallback `assigned` and `fallback`) before the score.
 */
const variantHeads = new WeakMap<Pointer, Map<string, string>>();

function variantRun(pointer: Pointer, tag: VariantTag): string {
  const id = tag.fallback === undefined ? `${tag.variant}\0${tag.model.name}\0${tag.model.version}` : undefined;
  let cache = variantHeads.get(pointer);
  const cached = id === undefined ? undefined : cache?.get(id);
  if (cached !== undefined) return cached;
  const text =
    `,"asOf":${JSON.stringify(pointer.date)},"runId":${JSON.stringify(pointer.runId)},` +
    `"model":${JSON.stringify({ name: tag.model.name, version: tag.model.version })},"variant":${JSON.stringify(tag.variant)}` +
    (tag.fallback === undefined ? '' : `,"assigned":${JSON.stringify(tag.assigned)},"fallback":${JSON.stringify(tag.fallback)}`) +
    ',"score":';
  if (id !== undefined) {
    if (!cache) variantHeads.set(pointer, (cache = new Map()));
    cache.set(id, text);
  }
  return text;
}

/** One prediction, the GET body and each element of a POST's `predictions`. */
export function predictionJson(pointer: Pointer, key: string, row: Answered & { variant?: VariantTag }): string {
  const h = head(pointer);
  return (
    h.job +
    JSON.stringify(key) +
    (row.variant ? variantRun(pointer, row.variant) : h.run) +
    num(row.score) +
    ',"label":' +
    (row.label === null ? 'null' : JSON.stringify(row.label)) +
    ',"outputs":' +
    nums(row.outputs) +
    // Stored answers carry no `source` (their body is what it always was); computed and late ones say so.
    (row.source === undefined ? '}' : `,"source":"${row.source}"}`)
  );
}

/**
 * The POST body: found keys in request order, then the missing ones; with enqueue on miss, the
 * missing keys enqueued (`pending`) and those beyond the per-request limit (`notEnqueued`).
 */
export function batchJson(
  pointer: Pointer,
  keys: readonly string[],
  rows: Map<string, Answered>,
  notComputed?: readonly string[],
  late?: { pending?: readonly string[]; notEnqueued?: readonly string[] },
): { body: string; hits: number; computed: number; late: number } {
  let predictions = '';
  let missing = '';
  let hits = 0;
  let computed = 0;
  let lateRows = 0;
  for (const key of keys) {
    const row = rows.get(key);
    if (row) {
      if (row.source === 'computed') computed++;
      else if (row.source === 'late') lateRows++;
      predictions += (hits++ ? ',' : '') + predictionJson(pointer, key, row);
    } else {
      missing += (missing ? ',' : '') + JSON.stringify(key);
    }
  }
  const over = notComputed?.length ? `,"notComputed":${JSON.stringify(notComputed)}` : '';
  const pending = late?.pending?.length ? `,"pending":${JSON.stringify(late.pending)}` : '';
  const notEnqueued = late?.notEnqueued?.length ? `,"notEnqueued":${JSON.stringify(late.notEnqueued)}` : '';
  return {
    body: `{"predictions":[${predictions}],"missing":[${missing}]${over}${pending}${notEnqueued}}`,
    hits,
    computed,
    late: lateRows,
  };
}
