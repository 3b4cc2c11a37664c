import fs from 'node:fs';
import path from 'node:path';
import { MigrationError } from '../errors.js';
import type { Logger } from '../log.js';
import { migrationsDir } from '../paths.js';
import { withTransaction, type Pool } from './pool.js';

// Any constant will do; it only has to be the same in every prescore process.
const MIGRATION_LOCK = 7_265_614_217;

interface MigrationFile {
  id: number;
  name: string;
  sql: string;
}

export function readMigrations(dir = migrationsDir): MigrationFile[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.slice(0, 3)), name: f, sql: fs.readFileSync(path.join(dir, f), 'utf8') }));
}

/**
 * Applies pending migrations in one transaction under an advisory lock, the ledger row
 * written before each file runs. Running it twice, or from two processes at once, is safe.
 * Returns the names applied.
 */
export async function migrate(pool: Pool, log: Logger): Promise<string[]> {
  const files = readMigrations();
  return withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE SCHEMA IF NOT EXISTS prescore');
    await client.query(
      `CREATE TABLE IF NOT EXISTS prescore.migrations (
         id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ id: number; name: string }>('SELECT id, name FROM prescore.migrations ORDER BY id');
    const known = new Map(files.map((f) => [f.id, f.name]));
    for (const row of rows) {
      if (!known.has(row.id)) {
        throw new MigrationError(`the database has migration ${row.name}, which this prescore does not know: upgrade prescore`);
      }
      if (known.get(row.id) !== row.name) {
        throw new MigrationError(
          `migration ${row.id} is ${row.name} in the database but ${known.get(row.id)} here: the history was edited`,
        );
      }
    }
    const applied = new Set(rows.map((r) => r.id));
    const done: string[] = [];
    for (const file of files) {
      if (applied.has(file.id)) continue;
      await client.query('INSERT INTO prescore.migrations (id, name) VALUES ($1, $2)', [file.id, file.name]);
      await client.query(file.sql);
      done.push(file.name);
      log.info({ migration: file.name }, 'applied migration');
    }
    return done;
  });
}
