import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Dispatcher } from '../notify/dispatcher.js';

export interface Context {
  config: Config;
  log: Logger;
  db: Database;
  /** Posts webhook events; the events of the runs it tracks are flushed before the command returns. */
  notifications: Dispatcher;
}

/**
 * Opens config, logger and database for one command and always closes them. Their modules are
 * loaded here, not on import: `prescore --help` and `--version` load none of them.
 */
export async function withContext<T>(
  fn: (ctx: Context) => Promise<T>,
  options: { migrate?: boolean; dispatch?: boolean } = {},
): Promise<T> {
  const [{ resolveConfig }, { openDatabase }, { createLogger }, { Dispatcher }] = await Promise.all([
    import('../config.js'),
    import('../db/database.js'),
    import('../log.js'),
    import('../notify/dispatcher.js'),
  ]);
  const config = resolveConfig();
  const log = createLogger(config.logLevel);
  const db = await openDatabase(config, log, options);
  // With `dispatch`, pending events of every run are posted in the background meanwhile.
  const notifications = new Dispatcher(db.pool, config.notify, log);
  if (options.dispatch) notifications.start();
  try {
    return await fn({ config, log, db, notifications });
  } finally {
    await notifications.flush();
    await notifications.close();
    await db.close();
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A plain aligned table on stdout. */
export function printTable(headers: string[], rows: (string | number | null)[][]): void {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  for (const r of cells)
    process.stdout.write(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd() + '\n',
    );
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}
