import type { Command } from 'commander';
import { InputError } from '../errors.js';
import { queueBackend } from '../queue/connection.js';
import { startWorker } from '../queue/worker.js';
import { withContext } from './context.js';
import { untilSignal } from './service.js';

export function workerCommands(program: Command): void {
  program
    .command('worker')
    .description('score chunks and finalize runs from the queue (Redis, or PostgreSQL without REDIS_URL)')
    .option('--concurrency <n>', 'chunks in flight in this process (default: PRESCORE_CHUNK_CONCURRENCY)')
    .action(async (opts: { concurrency?: string }) => {
      await withContext(async ({ config, db, log }) => {
        const concurrency = opts.concurrency === undefined ? config.chunkConcurrency : Number(opts.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1) {
          throw new InputError(`--concurrency must be a positive integer (got "${opts.concurrency}")`);
        }
        const worker = await startWorker(db.pool, queueBackend(config, db.url), config, log, concurrency);
        await untilSignal(log, () => worker.close());
      });
    });
}
