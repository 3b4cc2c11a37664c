/** PostgreSQL error codes prescore reacts to (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const PG = {
  uniqueViolation: '23505',
  syntaxError: '42601',
  undefinedTable: '42P01',
  undefinedColumn: '42703',
  insufficientPrivilege: '42501',
  datatypeMismatch: '42804',
  cannotCoerce: '42846',
  queryCanceled: '57014',
  readOnlyTransaction: '25006',
} as const;

/** The SQLSTATE of a PostgreSQL error, if `err` is one. */
export function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
