import crypto from 'node:crypto';
import { Redis } from 'ioredis';
import { startCli, type TestDb } from './helpers.js';

export const REDIS_URL = process.env.PRESCORE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A random BullMQ prefix per test file, removed afterwards. */
export function queuePrefix(label: string): string {
  return `pt_${label}_${crypto.randomBytes(3).toString('hex')}`;
}

export async function obliterate(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export type Proc = ReturnType<typeof startCli>;

/** Every worker this test file started: a failed test that drops its handle still gets them stopped. */
const started = new Set<Proc>();

export function startWorkers(db: TestDb, n: number, env: Record<string, string | undefined>, concurrency = 1): Proc[] {
  return Array.from({ length: n }, () => {
    const p = startCli(db, ['worker', '--concurrency', String(concurrency)], {
      PRESCORE_LOG_LEVEL: 'debug',
      PRESCORE_LOCK_SECONDS: '3',
      ...env,
    });
    started.add(p);
    void p.done.then(() => started.delete(p));
    return p;
  });
}

/** Stops every worker still running that startWorkers started (for `after` hooks). */
export function stopStartedWorkers(): Promise<void> {
  return stopAll([...started]);
}

/** SIGTERM, then SIGKILL for any that has not exited 20 s later: a stuck child never hangs the file. */
export async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs) p.kill('SIGTERM');
  const timer = setTimeout(() => procs.forEach((p) => p.kill('SIGKILL')), 20_000);
  await Promise.all(procs.map((p) => p.done));
  clearTimeout(timer);
}
