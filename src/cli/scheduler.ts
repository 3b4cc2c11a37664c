import type { Command } from 'commander';
import { queueBackend } from '../queue/connection.js';
import { startScheduler } from '../scheduler/scheduler.js';
import { withContext } from './context.js';
import { untilSignal } from './service.js';

export function schedulerCommand(program: Command): void {
  program
    .command('scheduler')
    .description("fire each job's cron in its time zone and catch up missed dates (any number of replicas)")
    .action(async () => {
      await withContext(
        async ({ config, db, log }) => {
          const scheduler = await startScheduler(db.pool, queueBackend(config, db.url), config, log);
          await untilSignal(log, () => scheduler.close());
        },
        { dispatch: true },
      );
    });
}
