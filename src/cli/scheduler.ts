import type { Command } from 'commander';
import { withContext } from './context.js';
import { metricsOptions, startMetrics, type MetricsFlags } from './metrics.js';
import { untilSignal } from './service.js';

export function schedulerCommand(program: Command): void {
  const command = program
    .command('scheduler')
    .description("fire each job's cron in its time zone and catch up missed dates (any number of replicas)");
  metricsOptions(command).action(async (opts: MetricsFlags) => {
    const { queueBackend } = await import('../queue/connection.js');
    const { startScheduler } = await import('../scheduler/scheduler.js');
    await withContext(
      async ({ config, db, log }) => {
        const backend = queueBackend(config, db.url);
        const metrics = await startMetrics('scheduler', opts, db.url, backend, log);
        try {
          const scheduler = await startScheduler(db.pool, backend, config, log);
          await untilSignal(log, () => scheduler.close());
        } finally {
          await metrics.close();
        }
      },
      { dispatch: true },
    );
  });
}
