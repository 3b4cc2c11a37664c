import type { Pool } from '../db/pool.js';
import { errorMessage } from '../errors.js';
import { readMigrations } from '../db/migrate.js';

export interface Readiness {
  ready: boolean;
  error?: string;
}

/** The migrations this build expects, read once: the files do not change under a running server. */
let expected: string[] | undefined;

/**
 * Ready when the database answers within `timeoutMs` and holds exactly the migrations this
 * build ships (a server older or newer than the schema would misread it).
 */
export async function readiness(pool: Pool, timeoutMs = 2000): Promise<Readiness> {
  expected ??= readMigrations().map((m) => m.name);
  let timer: NodeJS.Timeout | undefined;
  try {
    const { rows } = await Promise.race([
      pool.query<{ name: string }>('SELECT name FROM prescore.migrations ORDER BY id'),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the database did not answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    const applied = rows.map((r) => r.name);
    const pending = expected.filter((m) => !applied.includes(m));
    const unknown = applied.filter((m) => !expected!.includes(m));
    if (pending.length) return { ready: false, error: `migrations not applied: ${pending.join(', ')} (run prescore migrate)` };
    if (unknown.length)
      return { ready: false, error: `the database has migrations this build does not know: ${unknown.join(', ')}` };
    return { ready: true };
  } catch (err) {
    return { ready: false, error: `database unreachable: ${errorMessage(err)}` };
  } finally {
    clearTimeout(timer);
  }
}
