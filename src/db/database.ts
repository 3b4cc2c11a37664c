import type { Config } from '../config.js';
import { DatabaseError } from '../errors.js';
import type { Logger } from '../log.js';
import { startEmbedded, type EmbeddedServer } from './embedded.js';
import { migrate } from './migrate.js';
import { createPool, type Pool } from './pool.js';

export interface Database {
  url: string;
  pool: Pool;
  close(): Promise<void>;
}

/**
 * Connects to DATABASE_URL, or to the embedded PostgreSQL when it is not set, and applies
 * pending migrations (under an advisory lock, so concurrent starts are safe).
 */
export async function openDatabase(
  config: Config,
  log: Logger,
  options: { poolSize?: number; migrate?: boolean; timeoutMs?: number } = {},
): Promise<Database> {
  let embedded: EmbeddedServer | undefined;
  let url = config.databaseUrl;
  if (url === undefined) {
    embedded = await startEmbedded(config.homeDir, log, config.embeddedDir);
    url = embedded.url;
  }
  const pool = createPool(url, log, options.poolSize ?? 10, options.timeoutMs);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end();
    await embedded?.stop();
    const where = embedded ? 'the embedded PostgreSQL' : `PostgreSQL at ${describeUrl(url)} (DATABASE_URL)`;
    throw new DatabaseError(`cannot connect to ${where}: ${(err as Error).message}`, { cause: err });
  }
  try {
    if (options.migrate !== false) await migrate(pool, log);
  } catch (err) {
    await pool.end();
    await embedded?.stop();
    throw err;
  }
  let closed = false;
  return {
    url,
    pool,
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end();
      await embedded?.stop();
    },
  };
}

/** host:port/database of a connection string, without the password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}
