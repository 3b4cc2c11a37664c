import type { FastifyInstance } from 'fastify';
import { HttpError } from '../errors.js';
import { checkDate } from '../dates.js';

export interface Limits {
  /** Keys in one POST. */
  maxKeys: number;
  /** UTF-8 bytes of one key. */
  maxKeyBytes: number;
}

/** A key as the client sent it; returned as the problem, or null when it is fine. */
export function keyProblem(key: string, limits: Limits): string | null {
  if (key.length === 0) return 'is empty';
  // A JavaScript string of n UTF-16 units is at most 3n UTF-8 bytes: count only when it may matter.
  if (key.length * 3 > limits.maxKeyBytes && Buffer.byteLength(key) > limits.maxKeyBytes) {
    return `is longer than ${limits.maxKeyBytes} bytes`;
  }
  // PostgreSQL text cannot hold NUL, so no stored key has one; the query would fail on it.
  if (key.includes('\0')) return 'contains a NUL character';
  return null;
}

export function checkAsOf(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new HttpError(
      400,
      `asOf must be one date in YYYY-MM-DD form (got ${Array.isArray(value) ? 'several' : value === null ? 'null' : typeof value})`,
    );
  }
  try {
    return checkDate(value.slice(0, 40));
  } catch (err) {
    throw new HttpError(400, `asOf: ${(err as Error).message}`);
  }
}

const BODY_FIELDS = new Set(['keys', 'asOf', 'fallback']);

/** `fallback=latest-before`: a date without a published run answers from the newest date before it. */
export function checkFallback(value: unknown): boolean {
  if (value === undefined) return false;
  if (value === 'latest-before') return true;
  throw new HttpError(400, `fallback must be "latest-before" (got ${JSON.stringify(value)?.slice(0, 40)})`);
}

/** The body of POST /v1/predictions/:job, checked field by field. */
export function parseBatchBody(
  body: unknown,
  limits: Limits,
): { keys: string[]; asOf: string | undefined; latestBefore: boolean } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'the body must be a JSON object {"keys": ["k1", ...], "asOf"?: "YYYY-MM-DD"}');
  }
  const fields = body as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    // Strict, so a typo such as "asof" is an error rather than a silent answer from the newest date.
    if (!BODY_FIELDS.has(name)) {
      throw new HttpError(400, `unknown field "${name.slice(0, 40)}": the body has "keys", "asOf" and "fallback"`);
    }
  }
  const keys = fields.keys;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > limits.maxKeys) {
    const got = Array.isArray(keys) ? `${keys.length} keys` : keys === undefined ? 'none' : typeof keys;
    throw new HttpError(400, `keys must be an array of 1 to ${limits.maxKeys} strings (got ${got})`);
  }
  for (let i = 0; i < keys.length; i++) {
    const key: unknown = keys[i];
    if (typeof key !== 'string') {
      throw new HttpError(
        400,
        `keys[${i}] must be a string (got ${key === null ? 'null' : typeof key}); send numeric keys as strings, ` +
          'numbers above 2^53 lose precision in JSON',
      );
    }
    const problem = keyProblem(key, limits);
    if (problem) throw new HttpError(400, `keys[${i}] ${problem}`);
  }
  const asOf = checkAsOf(fields.asOf);
  const latestBefore = checkFallback(fields.fallback);
  if (latestBefore && asOf === undefined)
    throw new HttpError(400, 'fallback goes with asOf (without asOf the newest date answers)');
  return { keys: keys as string[], asOf, latestBefore };
}

/** Refuses query parameters other than `allowed`, so a typo (`asof`) is not silently ignored. */
export function checkQuery(query: Record<string, unknown> | undefined, allowed: readonly string[]): void {
  if (!query) return;
  for (const name of Object.keys(query)) {
    if (allowed.includes(name)) continue;
    const known = allowed.length ? `the only parameters are ${allowed.join(', ')}` : 'this route takes no query parameters';
    throw new HttpError(400, `unknown query parameter "${name.slice(0, 40)}": ${known}`);
  }
}

/**
 * The first field of the top-level JSON object `text` that appears twice, if any (JSON.parse
 * silently keeps the last). `parsed` is JSON.parse(text): only an object needs the scan, and
 * it has valid syntax, so the scan only tracks strings and nesting.
 */
export function duplicateField(text: string, parsed: unknown): string | undefined {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j]!)) j++;
      if (text[j] !== ':') continue;
      // Escapes compared decoded: "asOf" and "\u0061sOf" are the same field.
      const name = JSON.parse(text.slice(start, i + 1)) as string;
      if (seen.has(name)) return name;
      seen.add(name);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) depth++;
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
  }
  return undefined;
}

/**
 * Bodies are JSON only (a text/plain body is refused with 415 rather than parsed as a string),
 * parsed with plain JSON.parse: secure-json-parse's scan for __proto__ costs more than the
 * lookup, and the body's fields are checked by name (an own "__proto__" is an unknown field).
 * JSON.parse keeps the last of two equal fields; a client sending two asOf meant something, so
 * a repeated field is refused.
 */
export function installJsonBody(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body as string);
    } catch {
      return done(new HttpError(400, 'the body is not valid JSON'), undefined);
    }
    const dup = duplicateField(body as string, parsed);
    if (dup !== undefined)
      return done(new HttpError(400, `the field "${dup.slice(0, 40)}" appears twice in the body`), undefined);
    done(null, parsed);
  });
}
