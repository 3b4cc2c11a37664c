import { InputError } from './errors.js';

/**
 * The one rule for the names of jobs and models (and the aliases and versions in a model
 * reference): lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit.
 * They appear in URLs, file names and log lines, never in SQL text.
 */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;
export const NAME_RULE = '[a-z0-9][a-z0-9._-]* (lower case letters, digits, . _ -)';
export const MAX_NAME_LENGTH = 200;

export function isName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_PATTERN.test(name);
}

/** Returns `name`, or throws naming `what` (e.g. `--job`, `model name`) and the rule. */
export function checkName(name: string, what: string): string {
  if (!isName(name)) throw new InputError(`${what} "${name.slice(0, MAX_NAME_LENGTH)}" must match ${NAME_RULE}`);
  return name;
}
