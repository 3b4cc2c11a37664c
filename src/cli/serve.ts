import fs from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { AuthMode } from '../api/auth.js';
import type { JobInfo } from '../api/dashboard.js';
import { InputError, errorMessage } from '../errors.js';
import { integer } from './options.js';
import { untilSignal } from './service.js';

// Lookups are micro-batched, so a few connections carry a lot of traffic; more would only
// queue inside PostgreSQL.
const POOL_SIZE = 16;

/** The job files as the dashboard lists them, read afresh on each call, with each schedule's next fire. */
export async function jobInfos(jobsDir: string, now = new Date()): Promise<JobInfo[]> {
  const { listJobFiles, parseJobFile } = await import('../definitions/load.js');
  const { nextFire } = await import('../scheduler/calendar.js');
  return Promise.all(
    listJobFiles(jobsDir).map(async (file): Promise<JobInfo> => {
      try {
        const { spec } = parseJobFile(file, await fs.readFile(file, 'utf8'));
        const next = spec.schedule ? nextFire(spec.schedule, now) : null;
        return {
          name: spec.name,
          model: spec.model,
          schedule: spec.schedule ? { cron: spec.schedule.cron, timezone: spec.schedule.timezone } : null,
          nextFireAt: next?.at.toISOString() ?? null,
          nextDate: next?.date ?? null,
          error: null,
        };
      } catch (err) {
        const name = path.basename(file, '.json');
        return { name, model: null, schedule: null, nextFireAt: null, nextDate: null, error: errorMessage(err) };
      }
    }),
  );
}

interface ServeOptions {
  port: number;
  host: string;
  opsPort?: number;
  opsHost: string;
  auth: boolean;
  scoreBatchMs: number;
  cacheMb?: number;
  bundle?: string;
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'serve published predictions over HTTP (GET/POST /v1/predictions, /healthz, /readyz, /metrics) and the dashboard at /ui\n' +
        'env: DATABASE_URL, REDIS_URL (enqueue on miss), PRESCORE_API_AUTH (auto|token|none), PRESCORE_API_TIMEOUT_MS, PRESCORE_API_CACHE_MB',
    )
    .option('--port <port>', 'TCP port (0: any free port)', integer('--port', 0, 65535), 8080)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option(
      '--ops-port <port>',
      'also serve /healthz, /readyz and /metrics without tokens on this port (keep it private)',
      integer('--ops-port', 0, 65535),
    )
    .option('--ops-host <host>', 'address of the ops port', '127.0.0.1')
    .option('--no-auth', 'answer without tokens even when tokens exist (PRESCORE_API_AUTH=none); logged loudly')
    .option(
      '--score-batch-ms <ms>',
      'POST /v1/score: how long sent rows wait to share one inference call (0: one call per request)',
      integer('--score-batch-ms', 0, 1000),
      1,
    )
    .option(
      '--cache-mb <mib>',
      'MiB of published predictions kept in memory: the newest run of each job and every newly published one (0: off; default PRESCORE_API_CACHE_MB or 256)',
      integer('--cache-mb', 0, 1_048_576),
    )
    .option('--bundle <dir>', 'serve an exported bundle (prescore export --out DIR) instead: no database')
    .action(async (opts: ServeOptions) => {
      if (opts.bundle !== undefined) return serveBundle(opts.bundle, opts);
      const { resolveConfig } = await import('../config.js');
      const { createLogger } = await import('../log.js');
      const { openDatabase } = await import('../db/database.js');
      const { buildApi } = await import('../api/server.js');
      const { evaluationProvider } = await import('../outcomes/evaluate.js');
      const { queueBackend } = await import('../queue/connection.js');
      const { port: listenPort, opsPort } = opts;
      const config = resolveConfig();
      const auth: AuthMode = opts.auth ? config.apiAuth : 'none';
      const log = createLogger(config.logLevel);
      const db = await openDatabase(config, log, { poolSize: POOL_SIZE, timeoutMs: config.apiTimeoutMs });
      try {
        const api = await buildApi(db.pool, log, {
          processMetrics: true,
          auth,
          lookupTimeoutMs: config.apiTimeoutMs,
          jobs: () => jobInfos(config.jobsDir),
          evaluation: evaluationProvider(db.pool, config.jobsDir),
          variants: { jobsDir: config.jobsDir },
          score: { batchWindowMs: opts.scoreBatchMs },
          cacheBytes: (opts.cacheMb ?? config.apiCacheMb) * 1024 * 1024,
          // The workers' queue, opened on the first miss of a job that enqueues on miss.
          late: { backend: queueBackend(config, db.url) },
        });
        try {
          const address = await api.app.listen({ port: listenPort, host: opts.host });
          log.info({ address }, 'serving predictions');
          // On stdout too: scripts and tests that pass --port 0 read the address here.
          process.stdout.write(`listening on ${address}\n`);
          if (opsPort !== undefined) {
            const ops = await api.ops.listen({ port: opsPort, host: opts.opsHost });
            log.info({ address: ops }, 'serving /healthz, /readyz and /metrics without tokens');
            process.stdout.write(`ops listening on ${ops}\n`);
          }
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

/** `serve --bundle DIR`: the bundle, checked file by file, served from memory; no database is opened or started. */
async function serveBundle(dir: string, opts: ServeOptions): Promise<void> {
  if (opts.opsPort !== undefined)
    throw new InputError('--ops-port goes without --bundle: a bundle is served with no tokens, /metrics included');
  const { resolveConfig } = await import('../config.js');
  const { createLogger } = await import('../log.js');
  const { BundleStore } = await import('../bundle/read.js');
  const { buildBundleApi } = await import('../bundle/server.js');
  const config = resolveConfig();
  const log = createLogger(config.logLevel);
  const bundle = BundleStore.open(dir);
  const { manifest } = bundle;
  const api = buildBundleApi(bundle, log, { score: { batchWindowMs: opts.scoreBatchMs } });
  try {
    const address = await api.app.listen({ port: opts.port, host: opts.host });
    log.info({ address, job: manifest.job, date: manifest.date, runId: manifest.runId }, 'serving a bundle');
    process.stdout.write(`listening on ${address}\n`);
    await untilSignal(log, () => api.close());
  } finally {
    await api.close();
  }
}
