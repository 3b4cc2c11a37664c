import { InputError } from '../errors.js';

/**
 * Parsers for numeric flags and arguments, for commander's argParser: a bad value is refused
 * while the command line is read, before anything is planned or opened (exit 2).
 */
export function integer(flag: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || n < min || n > max) {
      throw new InputError(`${flag} must be a whole number from ${min} to ${max} (got "${value}")`);
    }
    return n;
  };
}

const MAX_BIGINT = 9223372036854775807n;

/** A run or token id: a positive bigint, kept as a string (ids may exceed 2^53). */
export function entityId(what: string, hint: string): (value: string) => string {
  return (value: string) => {
    if (!/^\d{1,19}$/.test(value) || BigInt(value) < 1n || BigInt(value) > MAX_BIGINT) {
      throw new InputError(`${what} must be a positive whole number (got "${value.slice(0, 40)}"): see ${hint}`);
    }
    return String(BigInt(value));
  };
}

export const runId = (value: string): string => entityId('run id', 'prescore runs list')(value);
