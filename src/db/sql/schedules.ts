import type { Queryable } from '../pool.js';

/**
 * `prescore.job_schedules`: per job, when a scheduler first saw it and whether it is paused
 * (migrations/005_job_schedules.sql). The job file holds the schedule; this table holds what
 * happened to it.
 */
export interface ScheduleState {
  job: string;
  /** The earlier of the first scheduler sighting and the job's first run; null if neither. */
  since: Date | null;
  paused: boolean;
  pausedAt: Date | null;
  resumedAt: Date | null;
}

interface Row {
  job: string;
  since: Date | null;
  paused: boolean | null;
  paused_at: Date | null;
  resumed_at: Date | null;
}

const SELECT_STATES = `
  SELECT j.job,
         (SELECT min(t) FROM (VALUES (s.first_seen_at),
                 ((SELECT min(r.created_at) FROM prescore.runs r WHERE r.job = j.job))) AS v (t)) AS since,
         s.paused, s.paused_at, s.resumed_at
    FROM unnest($1::text[]) AS j (job)
    LEFT JOIN prescore.job_schedules s ON s.job = j.job`;

function toState(r: Row): ScheduleState {
  return { job: r.job, since: r.since, paused: r.paused ?? false, pausedAt: r.paused_at, resumedAt: r.resumed_at };
}

/** The state of each job named (a job never seen nor paused: not paused, since null). */
export async function scheduleStates(db: Queryable, jobs: string[]): Promise<Map<string, ScheduleState>> {
  const { rows } = await db.query<Row>(SELECT_STATES, [jobs]);
  return new Map(rows.map((r) => [r.job, toState(r)]));
}

/**
 * Records that a scheduler sees these jobs scheduled at `now` (the first sighting stays) and
 * returns their states: what a scheduling pass decides on.
 */
export async function noteScheduled(db: Queryable, jobs: string[], now: Date): Promise<Map<string, ScheduleState>> {
  await db.query(
    `INSERT INTO prescore.job_schedules (job, first_seen_at) SELECT unnest($1::text[]), $2::timestamptz
       ON CONFLICT (job) DO UPDATE SET first_seen_at = $2::timestamptz
       WHERE prescore.job_schedules.first_seen_at IS NULL`,
    [jobs, now],
  );
  return scheduleStates(db, jobs);
}

/**
 * Pauses or resumes a job; returns whether it was paused before. A pause keeps the time it
 * began; a resume records when it ended (the fires in between are not caught up unless the
 * job says catchUp: true).
 */
export async function setPaused(db: Queryable, job: string, paused: boolean): Promise<boolean> {
  const { rows } = await db.query<{ was: boolean | null }>(
    `WITH old AS (SELECT paused FROM prescore.job_schedules WHERE job = $1)
     INSERT INTO prescore.job_schedules AS s (job, paused, paused_at)
     VALUES ($1, $2, CASE WHEN $2 THEN now() END)
     ON CONFLICT (job) DO UPDATE SET
       paused = $2,
       paused_at = CASE WHEN $2 AND NOT s.paused THEN now() ELSE s.paused_at END,
       resumed_at = CASE WHEN NOT $2 AND s.paused THEN now() ELSE s.resumed_at END,
       updated_at = now()
     RETURNING (SELECT paused FROM old) AS was`,
    [job, paused],
  );
  return rows[0]?.was ?? false;
}
