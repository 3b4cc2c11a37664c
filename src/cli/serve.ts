import type { Command } from 'commander';
import { buildApi } from '../api/server.js';
import { resolveConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import { InputError } from '../errors.js';
import { createLogger } from '../log.js';
import { untilSignal } from './service.js';

// Lookups are micro-batched, so a few connections carry a lot of traffic; more would only
// queue inside PostgreSQL.
const POOL_SIZE = 16;

function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new InputError(`--port must be 0 to 65535 (got "${value}")`);
  return Number(value);
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('serve published predictions over HTTP (GET/POST /v1/predictions, /healthz, /readyz, /metrics)')
    .option('--port <port>', 'TCP port (0: any free port)', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (opts: { port: string; host: string }) => {
      const listenPort = port(opts.port);
      const config = resolveConfig();
      const log = createLogger(config.logLevel);
      const db = await openDatabase(config, log, { poolSize: POOL_SIZE });
      try {
        const api = await buildApi(db.pool, log, { processMetrics: true });
        try {
          const address = await api.app.listen({ port: listenPort, host: opts.host });
          log.info({ address }, 'serving predictions');
          // On stdout too: scripts and tests that pass --port 0 read the address here.
          process.stdout.write(`listening on ${address}\n`);
          // SIGTERM/SIGINT: stop accepting, answer the requests in flight, close. Twice: exit now.
          await untilSignal(log, () => api.close());
        } finally {
          await api.close();
        }
      } finally {
        await db.close();
      }
    });
}
