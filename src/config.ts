import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { InputError } from './errors.js';

/**
 * The only place that reads process.env. Everything else receives a Config.
 */
const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
    .optional(),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional(),
  PRESCORE_JOBS_DIR: z.string().min(1).default('jobs'),
  PRESCORE_HOME: z.string().min(1).default('.prescore'),
  PRESCORE_EMBEDDED_DIR: z.string().min(1).default('/var/lib/prescore'),
  PRESCORE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PRESCORE_INFERENCE_THREADS: z.coerce.number().int().min(1).max(256).optional(),
  PRESCORE_CHUNK_CONCURRENCY: z.coerce.number().int().min(1).max(256).optional(),
  PRESCORE_LOCK_SECONDS: z.coerce.number().int().min(2).max(3600).default(30),
  PRESCORE_API_AUTH: z.enum(['auto', 'token', 'none']).default('auto'),
  PRESCORE_API_TIMEOUT_MS: z.coerce.number().int().min(50).max(600_000).default(3000),
  PRESCORE_API_CACHE_MB: z.coerce.number().int().min(0).max(1_048_576).default(256),
  PRESCORE_NOTIFY_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  PRESCORE_NOTIFY_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  PRESCORE_NOTIFY_BACKOFF_MS: z.coerce.number().int().min(10).max(3_600_000).default(2000),
  PRESCORE_NOTIFY_FLUSH_MS: z.coerce.number().int().min(0).max(600_000).default(15_000),
  PRESCORE_QUEUE_PREFIX: z
    .string()
    .regex(/^[a-z][a-z0-9_]*$/, 'must match [a-z][a-z0-9_]*')
    .default('prescore'),
});

export interface Config {
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  jobsDir: string;
  /** Where the embedded PostgreSQL keeps its data when no DATABASE_URL is given. */
  homeDir: string;
  /** As root, where the embedded server's binaries and data go when homeDir is private (see db/embedded-root.ts). */
  embeddedDir: string;
  logLevel: string;
  /** Worker threads that run ONNX inference; each gets cores / threads intra-op threads. */
  inferenceThreads: number;
  /** Chunks one process works on at once. */
  chunkConcurrency: number;
  /**
   * How long a queue job's lock lasts without renewal: a worker killed mid-chunk hands its
   * chunk to another worker after about this long.
   */
  lockSeconds: number;
  /** BullMQ key prefix (Redis) or schema (PostgreSQL backend) of prescore's queues. */
  queuePrefix: string;
  /** Whether the read API needs tokens: auto (once one exists), token (always), none (never). */
  apiAuth: 'auto' | 'token' | 'none';
  /** The read API's bound on one lookup: connection checkout, query and queue (then 503). */
  apiTimeoutMs: number;
  /** MiB of published predictions `prescore serve` keeps in memory (0: off). */
  apiCacheMb: number;
  notify: NotifyConfig;
}

/** How webhook events are delivered (src/notify/). */
export interface NotifyConfig {
  /** One POST's bound: connect, send and the receiver's answer. */
  timeoutMs: number;
  /** Attempts per event before it is given up (recorded as failed, with the last error). */
  attempts: number;
  /** Wait before the first retry; doubled for each further one. */
  backoffMs: number;
  /** How long a finishing `prescore run` waits for its run's events to be delivered. */
  flushMs: number;
}

export function resolveConfig(env: Record<string, string | undefined> = process.env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    throw new InputError(`environment variable ${key} ${issue.message} (got ${JSON.stringify(input[key])})`);
  }
  const c = parsed.data;
  const cores = Math.max(1, os.availableParallelism());
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    jobsDir: path.resolve(c.PRESCORE_JOBS_DIR),
    homeDir: path.resolve(c.PRESCORE_HOME),
    embeddedDir: path.resolve(c.PRESCORE_EMBEDDED_DIR),
    logLevel: c.PRESCORE_LOG_LEVEL,
    inferenceThreads: c.PRESCORE_INFERENCE_THREADS ?? cores,
    // A chunk per core, at least two: while one waits on PostgreSQL the other decodes. More
    // lanes measured no faster on 2 cores (2M rows: 2 lanes 8.1-8.4 s, 3 lanes 8.8 s).
    chunkConcurrency: c.PRESCORE_CHUNK_CONCURRENCY ?? Math.max(2, cores),
    lockSeconds: c.PRESCORE_LOCK_SECONDS,
    queuePrefix: c.PRESCORE_QUEUE_PREFIX,
    apiAuth: c.PRESCORE_API_AUTH,
    apiTimeoutMs: c.PRESCORE_API_TIMEOUT_MS,
    apiCacheMb: c.PRESCORE_API_CACHE_MB,
    notify: {
      timeoutMs: c.PRESCORE_NOTIFY_TIMEOUT_MS,
      attempts: c.PRESCORE_NOTIFY_ATTEMPTS,
      backoffMs: c.PRESCORE_NOTIFY_BACKOFF_MS,
      flushMs: c.PRESCORE_NOTIFY_FLUSH_MS,
    },
  };
}
