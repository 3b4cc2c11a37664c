import { FlowProducer, Queue, Worker, createPostgresBackend, type Processor } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';

export const CHUNK_QUEUE = 'chunks';
export const FINALIZE_QUEUE = 'finalize';
/** Keys the API enqueued on a miss (src/queue/late.ts). */
export const LATE_QUEUE = 'late';

/**
 * Where prescore's BullMQ queues live: Redis when REDIS_URL is set, otherwise BullMQ's own
 * PostgreSQL backend in the same database (schema `<prefix>_queue`), so one code path serves a
 * laptop with only PostgreSQL and a fleet with Redis.
 */
export interface QueueBackend {
  kind: 'redis' | 'postgres';
  describe: string;
  queue(name: string): Queue;
  worker(name: string, processor: Processor, options: { concurrency: number; lockSeconds: number }): Worker;
  flowProducer(): FlowProducer;
  /** Resolves once the queue's server answers; rejects (instead of waiting forever) if it does not. */
  probe(timeoutMs: number): Promise<void>;
  /**
   * How many workers listen on `queue` now (BullMQ's getWorkers: named Redis connections, or
   * the PostgreSQL backend's named LISTEN sessions in pg_stat_activity); null when the server
   * cannot list its clients.
   */
  workerCount(queue: Queue): Promise<number | null>;
}

/** BullMQ's stand-in entry when the server refuses CLIENT LIST (e.g. on GCP): the count is unknown. */
const NO_CLIENT_LIST = 'GCP does not support client list';

async function listedWorkers(queue: Queue, keep: (name: string) => boolean = () => true): Promise<number | null> {
  // Each entry's `name` is the queue's; `rawname` is the connection's own name.
  const workers = (await queue.getWorkers()) as { name?: string; rawname?: string }[];
  if (workers.some((w) => w.name === NO_CLIENT_LIST)) return null;
  return workers.filter((w) => keep(w.rawname ?? '')).length;
}

function redisConnection(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    // Workers block on Redis; BullMQ requires unlimited retries per request for them.
    maxRetriesPerRequest: null,
  };
}

/** Lock and stall settings shared by both backends: a dead worker's job moves on after lockSeconds. */
function workerOptions(o: { concurrency: number; lockSeconds: number }) {
  return {
    concurrency: o.concurrency,
    lockDuration: o.lockSeconds * 1000,
    stalledInterval: o.lockSeconds * 1000,
    maxStalledCount: 5,
  };
}

export function queueBackend(config: Config, databaseUrl: string): QueueBackend {
  if (config.redisUrl) {
    const connection = redisConnection(config.redisUrl);
    const prefix = config.queuePrefix;
    return {
      kind: 'redis',
      // The address as a URL with its database number, never the credentials.
      describe: `Redis ${connection.tls ? 'rediss' : 'redis'}://${connection.host}:${connection.port}/${connection.db} (prefix ${prefix})`,
      queue: (name) => new Queue(name, { connection, prefix }),
      worker: (name, processor, o) => new Worker(name, processor, { connection, prefix, ...workerOptions(o) }),
      flowProducer: () => new FlowProducer({ connection, prefix }),
      probe: async (timeoutMs) => {
        // BullMQ's own connections retry forever (as workers should); a one-off client does not.
        const redis = new Redis({
          ...connection,
          maxRetriesPerRequest: 1,
          connectTimeout: timeoutMs,
          lazyConnect: true,
          retryStrategy: () => null,
        });
        let cause: Error | undefined;
        redis.on('error', (err: Error) => (cause ??= err));
        try {
          await redis.connect();
          await redis.ping();
        } catch (err) {
          throw cause ?? err;
        } finally {
          redis.disconnect();
        }
      },
      workerCount: (queue) => listedWorkers(queue),
    };
  }
  const connection = { connectionString: databaseUrl, schema: `${config.queuePrefix}_queue`, migrate: true, max: 4 };
  /* eslint-disable @typescript-eslint/no-explicit-any -- BullMQ's backend generics do not survive a union */
  const factory = createPostgresBackend as any;
  return {
    kind: 'postgres',
    describe: `BullMQ PostgreSQL backend (schema ${connection.schema})`,
    queue: (name) => new Queue(name, { connection } as any, factory) as unknown as Queue,
    // Named after the schema: pg_stat_activity lists the sessions of the whole database, and
    // another queue schema there has queues of the same names.
    worker: (name, processor, o) =>
      new Worker(
        name,
        processor,
        { connection, name: connection.schema, ...workerOptions(o) } as any,
        factory,
      ) as unknown as Worker,
    flowProducer: () => new FlowProducer({ connection } as any, factory) as unknown as FlowProducer,
    // The queue lives in the database prescore is already connected to.
    probe: async () => undefined,
    workerCount: (queue) => listedWorkers(queue, (n) => n === `${queue.name}:w:${connection.schema}`),
  };
  /* eslint-enable @typescript-eslint/no-explicit-any */
}
