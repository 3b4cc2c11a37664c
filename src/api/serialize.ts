import type { Answered } from './miss.js';
import type { Pointer } from './pointers.js';

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

/** One prediction, the GET body and each element of a POST's `predictions`. */
export function predictionJson(pointer: Pointer, key: string, row: Answered): string {
  const h = head(pointer);
  return (
    h.job +
    JSON.stringify(key) +
    h.run +
    num(row.score) +
    ',"label":' +
    (row.label === null ? 'null' : JSON.stringify(row.label)) +
    ',"outputs":' +
    nums(row.outputs) +
    // Stored answers carry no `source` (their body is what it always was); computed ones say so.
    (row.source === undefined ? '}' : `,"source":"${row.source}"}`)
  );
}

/** The POST body: found keys in request order, then the missing ones. */
export function batchJson(
  pointer: Pointer,
  keys: readonly string[],
  rows: Map<string, Answered>,
  notComputed?: readonly string[],
): { body: string; hits: number; computed: number } {
  let predictions = '';
  let missing = '';
  let hits = 0;
  let computed = 0;
  for (const key of keys) {
    const row = rows.get(key);
    if (row) {
      if (row.source !== undefined) computed++;
      predictions += (hits++ ? ',' : '') + predictionJson(pointer, key, row);
    } else {
      missing += (missing ? ',' : '') + JSON.stringify(key);
    }
  }
  const over = notComputed?.length ? `,"notComputed":${JSON.stringify(notComputed)}` : '';
  return { body: `{"predictions":[${predictions}],"missing":[${missing}]${over}}`, hits, computed };
}
