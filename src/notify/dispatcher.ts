import { setTimeout as sleep } from 'node:timers/promises';
import type { NotifyConfig } from '../config.js';
import type { Pool } from '../db/pool.js';
import { claimDue, markAttemptFailed, markDelivered, pendingEvents, type Notification } from '../db/sql/notifications.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { postJson } from './post.js';

/** How often a dispatcher looks for due events; an event waits about this long at most. */
const POLL_MS = 1000;
/** Events posted at once by one dispatcher. */
const BATCH = 8;

/**
 * Posts the outbox's events (migrations/006_notifications.sql) to their webhooks, in the
 * background of worker, scheduler and `prescore run` processes. Any number of dispatchers
 * share the outbox (each claim skips rows another holds). Delivery is at least once: an
 * attempt whose outcome was not recorded (the process died) is made again after its claim
 * expires; receivers can tell repeats by the `x-prescore-delivery` header. Nothing here
 * throws into a run: failures go to the log and the outbox row.
 */
export class Dispatcher {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<number> | undefined;
  private closed = false;
  private readonly tracked = new Set<string>();

  constructor(
    private readonly pool: Pool,
    private readonly config: NotifyConfig,
    private readonly log: Logger,
  ) {}

  start(): this {
    this.schedule(0);
    return this;
  }

  /** A run this process started or moved on: `flush()` waits for its events. */
  track(runId: string): void {
    this.tracked.add(runId);
  }

  /**
   * Waits (at most `config.flushMs`) until the events of these runs (default: the tracked
   * ones) are delivered or given up, posting them meanwhile; what is left stays in the
   * outbox for the next dispatcher. Never throws.
   */
  async flush(runIds: string[] = [...this.tracked]): Promise<void> {
    if (runIds.length === 0) return;
    const deadline = Date.now() + this.config.flushMs;
    try {
      for (;;) {
        await this.tick(runIds);
        const { pending, nextAt } = await pendingEvents(this.pool, runIds);
        if (pending === 0) return;
        const now = Date.now();
        if (now >= deadline || (nextAt && nextAt.getTime() > deadline)) {
          this.log.warn(
            { runIds, pending },
            'notifications not delivered yet: they stay in prescore.notifications for the next worker, scheduler or prescore run',
          );
          return;
        }
        await sleep(Math.max(20, Math.min(POLL_MS, (nextAt?.getTime() ?? now) - now, deadline - now)));
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'notifications: flush failed');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.ticking?.catch(() => undefined);
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.tick()
        .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'notifications: dispatch failed'))
        .finally(() => this.schedule(POLL_MS));
    }, ms);
    this.timer.unref();
  }

  /** One pass: claims due events and posts them; the number posted. One pass at a time. */
  private async tick(runIds?: string[]): Promise<number> {
    while (this.ticking) await this.ticking.catch(() => undefined);
    this.ticking = this.pass(runIds);
    try {
      return await this.ticking;
    } finally {
      this.ticking = undefined;
    }
  }

  private async pass(runIds?: string[]): Promise<number> {
    // A claim lasts past the POST's own bound, so only a dead dispatcher's claim expires.
    const leaseSeconds = Math.ceil(this.config.timeoutMs / 1000) + 30;
    let total = 0;
    for (;;) {
      // A closing process finishes the batch in flight, not the whole backlog.
      if (this.closed) return total;
      const due = await claimDue(this.pool, BATCH, leaseSeconds, runIds);
      if (due.length === 0) return total;
      await Promise.all(due.map((n) => this.deliver(n)));
      total += due.length;
    }
  }

  private async deliver(n: Notification): Promise<void> {
    const body = JSON.stringify(n.payload);
    const r = await postJson(
      n.url,
      body,
      { 'user-agent': 'prescore', 'x-prescore-event': n.event, 'x-prescore-delivery': n.id },
      this.config.timeoutMs,
    );
    const where = { notification: n.id, event: n.event, runId: n.runId, url: n.url, attempt: n.attempts };
    if (r.ok) {
      await markDelivered(this.pool, n.id, r.status!);
      this.log.debug(where, 'notification delivered');
      return;
    }
    const last = n.attempts >= this.config.attempts;
    const retryMs = last ? null : this.config.backoffMs * 2 ** (n.attempts - 1);
    await markAttemptFailed(this.pool, n.id, { status: r.status, error: r.error ?? 'failed', retryMs });
    if (last) this.log.warn({ ...where, error: r.error }, 'notification given up after its last attempt');
    else this.log.info({ ...where, error: r.error, retryMs }, 'notification attempt failed; retrying');
  }
}
