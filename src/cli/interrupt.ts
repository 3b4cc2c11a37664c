import pg from 'pg';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { failRun } from '../db/sql/runs.js';

export interface LocalRuns {
  /** A run this process executes from now on: a signal marks it failed. */
  add(runId: string): void;
  /** A run that ended: a signal leaves it alone. */
  delete(runId: string): void;
}

const EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Runs `fn`, which executes runs in this process. On SIGINT or SIGTERM (Ctrl-C), each of its
 * runs still going is marked failed (its done chunks stay done: `prescore runs retry` resumes
 * it) and the process exits, so the next `prescore run` of the same date goes straight through
 * instead of waiting for the run's heartbeat to go stale. A second signal exits at once.
 * The marking uses a connection of its own: the pool may be busy with the chunks.
 */
export async function failRunsOnSignal<T>(databaseUrl: string, log: Logger, fn: (runs: LocalRuns) => Promise<T>): Promise<T> {
  const active = new Set<string>();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = EXIT_CODES[signal] ?? 1;
    if (stopping) process.exit(code);
    stopping = true;
    void (async () => {
      const ids = [...active];
      if (ids.length) {
        const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          for (const id of ids) {
            await failRun(client, id, `interrupted by ${signal}; prescore runs retry ${id} resumes it`);
          }
        } catch (err) {
          log.error({ err: errorMessage(err), runs: ids }, 'could not mark the interrupted runs failed');
        } finally {
          await client.end().catch(() => undefined);
        }
      }
      const which = ids.length ? `run ${ids.join(', ')} marked failed (prescore runs retry resumes it)` : 'nothing was started';
      process.stderr.write(`\nerror: interrupted by ${signal}: ${which}\n`);
      process.exit(code);
    })();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn({ add: (id) => active.add(id), delete: (id) => active.delete(id) });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
