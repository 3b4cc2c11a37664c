import type { Queryable } from '../pool.js';

/**
 * The notification outbox, `prescore.notifications` (migrations/006_notifications.sql): events
 * are written by a trigger on the run's status change; these statements hand them out to
 * dispatchers and record each attempt.
 */
export interface Notification {
  id: string;
  runId: string;
  event: string;
  url: string;
  payload: Record<string, unknown>;
  /** Attempts made, this one included. */
  attempts: number;
}

/**
 * Claims up to `limit` due events for one attempt each. SKIP LOCKED: dispatchers in other
 * processes claim other rows, never the same one. The claim pushes `next_at` out by
 * `leaseSeconds`, so an event whose dispatcher died mid-attempt becomes due again.
 */
export async function claimDue(db: Queryable, limit: number, leaseSeconds: number, runIds?: string[]): Promise<Notification[]> {
  const { rows } = await db.query<Notification>(
    `UPDATE prescore.notifications n SET attempts = attempts + 1, next_at = now() + make_interval(secs => $2)
      WHERE id IN (SELECT id FROM prescore.notifications
                    WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= now()
                      AND ($3::bigint[] IS NULL OR run_id = ANY($3::bigint[]))
                    ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
      RETURNING id::text, run_id::text AS "runId", event, url, payload, attempts`,
    [limit, leaseSeconds, runIds ?? null],
  );
  return rows;
}

export async function markDelivered(db: Queryable, id: string, status: number): Promise<void> {
  await db.query('UPDATE prescore.notifications SET delivered_at = now(), last_status = $2 WHERE id = $1::bigint', [id, status]);
}

/** Records a failed attempt: retried after `retryMs`, or given up when `retryMs` is null. */
export async function markAttemptFailed(
  db: Queryable,
  id: string,
  failure: { status: number | null; error: string; retryMs: number | null },
): Promise<void> {
  await db.query(
    `UPDATE prescore.notifications SET last_status = $2, last_error = $3,
            failed_at = CASE WHEN $4::int IS NULL THEN now() END,
            next_at = now() + make_interval(secs => coalesce($4::int, 0) / 1000.0)
      WHERE id = $1::bigint`,
    [id, failure.status, failure.error, failure.retryMs],
  );
}

/** Events not yet delivered nor given up (of these runs), and when the next one is due. */
export async function pendingEvents(db: Queryable, runIds?: string[]): Promise<{ pending: number; nextAt: Date | null }> {
  const { rows } = await db.query<{ pending: number; next_at: Date | null }>(
    `SELECT count(*)::int AS pending, min(next_at) AS next_at FROM prescore.notifications
      WHERE delivered_at IS NULL AND failed_at IS NULL AND ($1::bigint[] IS NULL OR run_id = ANY($1::bigint[]))`,
    [runIds ?? null],
  );
  return { pending: rows[0]!.pending, nextAt: rows[0]!.next_at };
}
