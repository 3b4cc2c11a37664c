import type { Command } from 'commander';
import { InputError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { RoleMetrics } from '../metrics/role.js';
import type { QueueBackend } from '../queue/connection.js';
import { integer } from './options.js';

export interface MetricsFlags {
  metricsPort?: number;
  metricsHost: string;
}

/** --metrics-port and --metrics-host, shared by `prescore worker` and `prescore scheduler`. */
export function metricsOptions(command: Command): Command {
  return command
    .option(
      '--metrics-port <port>',
      'serve /metrics (Prometheus text) and /healthz on this port, without tokens (0: any free port)',
      integer('--metrics-port', 0, 65535),
    )
    .option('--metrics-host <host>', 'address of the metrics port', '127.0.0.1');
}

/**
 * Starts the role's metrics and their HTTP port when --metrics-port is given (else nothing:
 * no counters, no reads). The address goes to stdout, as `prescore serve` prints its own.
 */
export async function startMetrics(
  role: 'worker' | 'scheduler',
  flags: MetricsFlags,
  databaseUrl: string,
  backend: QueueBackend,
  log: Logger,
): Promise<{ metrics: RoleMetrics | undefined; close(): Promise<void> }> {
  if (flags.metricsPort === undefined) return { metrics: undefined, close: async () => undefined };
  const { roleMetrics } = await import('../metrics/role.js');
  const { serveMetrics } = await import('../metrics/server.js');
  const metrics = roleMetrics(role, databaseUrl, backend, log);
  try {
    const server = await serveMetrics(metrics.registry, flags.metricsHost, flags.metricsPort, log).catch((err: unknown) => {
      throw new InputError(
        `--metrics-port ${flags.metricsPort} --metrics-host ${flags.metricsHost}: cannot listen: ${errorMessage(err)}`,
        { cause: err },
      );
    });
    log.info({ address: server.url }, 'serving /metrics and /healthz');
    process.stdout.write(`metrics listening on ${server.url}\n`);
    return {
      metrics,
      close: async () => {
        await server.close();
        await metrics.close();
      },
    };
  } catch (err) {
    await metrics.close();
    throw err;
  }
}
