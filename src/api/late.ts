import type { Queue } from 'bullmq';
import type { FastifyReply } from 'fastify';
import type { Pool } from '../db/pool.js';
import { lateRows, type LateRow } from '../db/sql/late.js';
import { rejectReasons } from '../db/sql/rejects.js';
import { HttpError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { QueueBackend } from '../queue/connection.js';
import { LATE_QUEUE, lateBacklog, lateJob } from '../queue/late.js';
import type { PinnedRun } from '../score/pinned.js';
import { keyFits } from '../source/keys.js';
import { JSON_TYPE } from './http.js';
import type { StoredPrediction } from './lookup.js';
import type { Answered, Completed } from './miss.js';
import type { Pointer } from './pointers.js';

export interface LateOptions {
  /** Where the workers' queues live (`prescore serve`: REDIS_URL, or the PostgreSQL backend). */
  backend: QueueBackend;
  /** Missing keys one request may enqueue (default 100); the rest stay missing (`notEnqueued`). */
  maxKeys?: number;
  /** Keys waiting or being scored on the queue at most; beyond it, 503 (default 10,000). */
  maxBacklog?: number;
  /** Enqueue calls not yet answered by the queue at most; beyond it, 503 at once (default 64). */
  maxInFlight?: number;
}

/** What a GET that waited (`?wait=`) found: the late answer, or why there is none. */
export type Settled = { row: Answered; rejected?: undefined } | { row?: undefined; rejected: string };

/** `Retry-After` of a pending answer: a worker with nothing else to do scores a key in milliseconds. */
export const RETRY_AFTER_SECONDS = 1;
/** The longest `?wait=` a GET may ask for. */
export const MAX_WAIT_MS = 10_000;
/** The queue's backlog is read at most this often (it bounds what a burst of misses may add). */
const BACKLOG_TTL_MS = 1000;

/**
 * `?wait=` of a GET: `500ms`, `2s` (a whole number of ms or s), at most MAX_WAIT_MS; 0 without
 * it. Anything else is a 400 naming `wait`.
 */
export function checkWait(value: unknown): number {
  if (value === undefined) return 0;
  const m = typeof value === 'string' ? /^(\d{1,6})(ms|s)$/.exec(value) : null;
  const ms = m ? Number(m[1]) * (m[2] === 's' ? 1000 : 1) : NaN;
  if (!(ms <= MAX_WAIT_MS)) {
    const got = typeof value === 'string' ? `"${value.slice(0, 40)}"` : 'a repeated parameter';
    throw new HttpError(400, `wait must be a duration like 500ms or 2s, at most ${MAX_WAIT_MS / 1000}s (got ${got})`);
  }
  return ms;
}

/** The 202 of a key enqueued and not scored yet. */
export function sendPending(reply: FastifyReply, pointer: Pointer, key: string) {
  return reply
    .code(202)
    .header('retry-after', String(RETRY_AFTER_SECONDS))
    .type(JSON_TYPE)
    .send(
      JSON.stringify({
        status: 'pending',
        job: pointer.job,
        key,
        asOf: pointer.date,
        runId: pointer.runId,
        retryAfterSeconds: RETRY_AFTER_SECONDS,
      }),
    );
}

function answerOf(l: LateRow): Settled {
  return l.rejected === null
    ? { row: { score: l.score, label: l.label, outputs: l.outputs, source: 'late' } }
    : { rejected: l.rejected };
}

/**
 * Enqueue on miss (`serving.onMiss: "enqueue"`), the API's half: a key the served run lacks is
 * answered from the run's late arrivals when a worker has scored it (`"source": "late"`, or 404
 * with the reason), and otherwise put on the late queue, once per (run, key) by job id, and
 * answered 202 pending. `?wait=` holds a GET until the worker's NOTIFY on LATE_CHANNEL (the
 * API's LISTEN connection) says the key is stored, or the wait ends.
 */
export class LateArrivals {
  private queue: Queue | undefined;
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly closers = new Set<() => void>();
  private unsettled = 0;
  private backlog: { n: number; at: number; reading?: Promise<number> } = { n: 0, at: 0 };
  private closed = false;
  private readonly maxKeys: number;
  private readonly maxBacklog: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly options: LateOptions & { timeoutMs: number },
    private readonly onEnqueued: (job: string, keys: number) => void,
  ) {
    this.maxKeys = options.maxKeys ?? 100;
    this.maxBacklog = options.maxBacklog ?? 10_000;
    this.maxInFlight = options.maxInFlight ?? 64;
  }

  /** `rows` of `pointer`'s run completed with its late arrivals; the other missing keys enqueued (`pending`). */
  async complete(
    run: PinnedRun,
    pointer: Pointer,
    missing: readonly string[],
    rows: Map<string, StoredPrediction>,
  ): Promise<Completed> {
    const fit = missing.filter((k) => keyFits(run.job.key.pgType, k));
    if (fit.length === 0) return { pointer, rows };
    const [late, rejects] = await Promise.all([
      lateRows(this.pool, run.runId, fit),
      run.rejected ? rejectReasons(this.pool, run.runId, fit) : new Map<string, string>(),
    ]);
    // The lookup's map is shared by the requests of its query: answers go into a copy.
    const out = new Map<string, Answered>(rows);
    const rejected = new Map(rejects);
    const wanted: string[] = [];
    for (const k of fit) {
      if (rejected.has(k)) continue;
      const l = late.get(k);
      if (l && !l.stale) {
        const a = answerOf(l);
        if (a.row) out.set(k, a.row);
        else rejected.set(k, a.rejected);
      } else wanted.push(k);
    }
    const pending = wanted.slice(0, this.maxKeys);
    const notEnqueued = wanted.length > pending.length ? wanted.slice(pending.length) : undefined;
    if (pending.length > 0) await this.enqueue(run, pending);
    return { pointer, rows: out, rejected, pending, notEnqueued };
  }

  /**
   * Waits up to `ms` for a pending key's late answer. The row is read once after the waiter is
   * in place, so an answer stored between the enqueue and now is not missed.
   */
  async wait(runId: string, key: string, ms: number): Promise<Settled | undefined> {
    return (await this.waitMany(runId, [key], ms)).get(key);
  }

  /**
   * Waits up to `ms` for the late answers of pending keys (a batch's): resolves with those
   * stored by then, as soon as all are or when the time is up. One read of all the keys after
   * their waiters are in place, then one read of a key per notification of it.
   */
  waitMany(runId: string, keys: readonly string[], ms: number): Promise<Map<string, Settled>> {
    const settled = new Map<string, Settled>();
    if (ms <= 0 || this.closed || keys.length === 0) return Promise.resolve(settled);
    const wanted = new Set(keys);
    return new Promise((resolve) => {
      let done = false;
      const checks = new Map<string, () => void>();
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const [key, check] of checks) {
          const id = `${runId}\0${key}`;
          const set = this.waiters.get(id);
          set?.delete(check);
          if (set?.size === 0) this.waiters.delete(id);
        }
        this.closers.delete(finish);
        resolve(settled);
      };
      const take = (found: Map<string, LateRow>) => {
        for (const [key, l] of found) {
          if (done || !wanted.has(key) || settled.has(key) || l.stale) continue;
          settled.set(key, answerOf(l));
        }
        if (settled.size === wanted.size) finish();
      };
      const read = (ks: string[]) => lateRows(this.pool, runId, ks).then(take, () => undefined);
      const timer = setTimeout(finish, ms);
      for (const key of wanted) {
        const check = () => void read([key]);
        checks.set(key, check);
        const id = `${runId}\0${key}`;
        let set = this.waiters.get(id);
        if (!set) this.waiters.set(id, (set = new Set()));
        set.add(check);
      }
      this.closers.add(finish);
      void read([...wanted]);
    });
  }

  /** A worker stored a key (LATE_CHANNEL payload `{runId, key}`): its waiters read it. */
  notified(payload: string): void {
    try {
      const { runId, key } = JSON.parse(payload) as { runId?: unknown; key?: unknown };
      if (typeof runId !== 'string' || typeof key !== 'string') return;
      for (const check of this.waiters.get(`${runId}\0${key}`) ?? []) check();
    } catch {
      // Not ours to understand: the waits end on their own.
    }
  }

  /** Ends the waits (they answer 202) and closes the queue. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of [...this.closers]) c();
    const q = this.queue;
    this.queue = undefined;
    await q?.close().catch(() => undefined);
  }

  private queueOf(): Queue {
    if (!this.queue) {
      // Opened on the first miss of such a job: an API serving none never connects to the queue.
      this.queue = this.options.backend.queue(LATE_QUEUE);
      this.queue.on('error', (err) => this.log.warn({ err: errorMessage(err) }, 'late queue error'));
    }
    return this.queue;
  }

  private unavailable(err: unknown): HttpError {
    this.log.warn({ err: errorMessage(err), queue: this.options.backend.describe }, 'enqueue on miss failed');
    return new HttpError(
      503,
      `the queue (${this.options.backend.kind === 'redis' ? 'Redis' : 'PostgreSQL backend'}) is unavailable: the missing key cannot be enqueued for scoring; retry later`,
    );
  }

  /** Enqueued within the lookup timeout, or 503; bounded by the unanswered calls and the queue's backlog. */
  private async enqueue(run: PinnedRun, keys: string[]): Promise<void> {
    if (this.closed) throw new HttpError(503, 'the API is shutting down; retry on another instance');
    if (this.unsettled >= this.maxInFlight) {
      throw new HttpError(503, `${this.unsettled} enqueues of missing keys are waiting for the queue already; retry later`);
    }
    const queue = this.queueOf();
    this.unsettled++;
    const work = (async () => {
      const backlog = await this.backlogOf(queue);
      if (backlog + keys.length > this.maxBacklog) {
        throw new HttpError(
          503,
          `${backlog} missing keys are waiting to be scored already (limit ${this.maxBacklog}): start more workers (prescore worker) or retry later`,
        );
      }
      await queue.addBulk(keys.map((key) => lateJob({ runId: run.runId, job: run.job.name, key })));
      this.backlog.n += keys.length;
    })();
    // Counted until the queue answers, not until the timeout: a queue that is down cannot pile them up.
    work.then(
      () => this.unsettled--,
      () => this.unsettled--,
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
        }),
      ]);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw this.unavailable(err);
    } finally {
      clearTimeout(timer);
    }
    this.onEnqueued(run.job.name, keys.length);
  }

  private backlogOf(queue: Queue): Promise<number> {
    const b = this.backlog;
    if (Date.now() - b.at < BACKLOG_TTL_MS) return Promise.resolve(b.n);
    b.reading ??= lateBacklog(queue)
      .then((n) => {
        this.backlog = { n, at: Date.now() };
        return n;
      })
      .finally(() => (b.reading = undefined));
    return b.reading;
  }
}
