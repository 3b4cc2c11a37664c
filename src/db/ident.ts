import { InputError } from '../errors.js';

/** Quotes an SQL identifier (pg's escapeIdentifier, without needing a client). */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

export interface QualifiedName {
  schema: string;
  name: string;
}

/**
 * Parses `table` or `schema.table` as written in a job file. Only plain identifiers
 * (or double-quoted ones) are accepted; anything else (`x; DROP TABLE y`) is refused here,
 * and the result is still checked against the catalog and quoted before use.
 */
export function parseQualifiedName(text: string, what: string): QualifiedName {
  const part = String.raw`(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")`;
  const m = new RegExp(`^(${part})(?:\\.(${part}))?$`).exec(text.trim());
  if (!m) {
    throw new InputError(
      `${what} ${JSON.stringify(text)} is not a table name: use table or schema.table (letters, digits, _; or "quoted")`,
    );
  }
  const unquote = (s: string) => (s.startsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s.toLowerCase());
  return m[2] === undefined ? { schema: 'public', name: unquote(m[1]!) } : { schema: unquote(m[1]!), name: unquote(m[2]) };
}

export function quoteQualified(q: QualifiedName): string {
  return `${quoteIdent(q.schema)}.${quoteIdent(q.name)}`;
}
