import fs from 'node:fs';
import cron, { type ScheduledTask } from 'node-cron';
import type { Config } from '../config.js';
import { ActiveRunError, InputError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pool } from '../db/pool.js';
import { resolveJob } from '../definitions/check.js';
import { listJobFiles, parseJobFile, type JobFile } from '../definitions/load.js';
import { FINALIZE_QUEUE, type QueueBackend } from '../queue/connection.js';
import { enqueueRun, reconcileRuns } from '../queue/flows.js';
import { hasAnyRun } from '../db/sql/runs.js';
import { noteScheduled } from '../db/sql/schedules.js';
import { planRun } from '../runs/plan.js';
import { triggerDates } from './calendar.js';

export interface SchedulerHandle {
  /** Runs one scheduling pass now (also what each cron fire and the periodic tick do). */
  tick(): Promise<string[]>;
  close(): Promise<void>;
}

const TICK_MS = 30_000;

/**
 * A new job file is seen on the next pass, up to TICK_MS after it appears: a fire within that
 * slack before the first sighting still counts (a job added a minute before its cron fires).
 */
const FIRST_SIGHTING_SLACK_MS = TICK_MS + 5_000;

/**
 * Fires each scheduled job in its time zone. node-cron wakes the scheduler on time; what to
 * run comes from the calendar (dueDates) and the runs table: a due date with no run yet is
 * planned and enqueued. The runs table's unique index, not the queue, makes a trigger
 * exactly-once, so any number of schedulers may run at once. Missed dates (downtime, a fire
 * node-cron skipped on a daylight-saving night) are caught up, catchUpDays back, but never
 * from before the job's start (triggerDates); a job paused in prescore.job_schedules is skipped.
 */
export async function startScheduler(
  pool: Pool,
  backend: QueueBackend,
  config: Config,
  log: Logger,
  options: { now?: () => Date } = {},
): Promise<SchedulerHandle> {
  const now = options.now ?? (() => new Date());
  const producer = backend.flowProducer();
  const finalizeQueue = backend.queue(FINALIZE_QUEUE);
  producer.on('error', (err) => log.warn({ err: errorMessage(err) }, 'queue producer error'));
  finalizeQueue.on('error', (err) => log.warn({ err: errorMessage(err) }, 'queue error'));
  const reported = new Set<string>();
  const tasks = new Map<string, ScheduledTask>();

  const loadJobs = (): JobFile[] => {
    const jobs: JobFile[] = [];
    for (const file of listJobFiles(config.jobsDir)) {
      try {
        jobs.push(parseJobFile(file, fs.readFileSync(file, 'utf8')));
      } catch (err) {
        const msg = errorMessage(err);
        if (!reported.has(msg)) log.error({ file, err: msg }, 'job file is invalid; not scheduled');
        reported.add(msg);
      }
    }
    return jobs.filter((j) => j.spec.schedule);
  };

  const trigger = async (job: JobFile, date: string): Promise<string | null> => {
    if (await hasAnyRun(pool, job.spec.name, date)) return null;
    try {
      const resolved = await resolveJob(pool, job);
      const planned = await planRun(pool, resolved, date, 'schedule');
      await enqueueRun(pool, producer, planned.runId);
      log.info({ job: job.spec.name, date, runId: planned.runId }, 'triggered');
      return planned.runId;
    } catch (err) {
      if (err instanceof ActiveRunError) return null;
      const key = `${job.spec.name} ${date} ${errorMessage(err)}`;
      if (!reported.has(key)) {
        log[err instanceof InputError ? 'warn' : 'error'](
          { job: job.spec.name, date, err: errorMessage(err) },
          'trigger failed; will retry',
        );
        reported.add(key);
      }
      return null;
    }
  };

  let running: Promise<string[]> | null = null;
  const tick = (): Promise<string[]> =>
    (running ??= (async () => {
      const started: string[] = [];
      try {
        const jobs = loadJobs();
        syncTasks(jobs);
        const at = now();
        // Read at fire time by every replica: a job paused from any machine is skipped here.
        const states = await noteScheduled(
          pool,
          jobs.map((j) => j.spec.name),
          at,
        );
        for (const job of jobs) {
          const state = states.get(job.spec.name)!;
          const since = new Date((state.since ?? at).getTime() - FIRST_SIGHTING_SLACK_MS);
          const dates = triggerDates(job.spec.schedule!, at, { since, resumedAt: state.resumedAt });
          for (const date of dates) {
            if (state.paused) {
              const key = `paused ${job.spec.name} ${date}`;
              if (!reported.has(key) && !(await hasAnyRun(pool, job.spec.name, date))) {
                log.info({ job: job.spec.name, date }, 'job is paused; skipped (prescore jobs resume to resume)');
                reported.add(key);
              }
              continue;
            }
            const id = await trigger(job, date);
            if (id) started.push(id);
          }
        }
        const fixed = await reconcileRuns(pool, producer, finalizeQueue);
        if (fixed.length) log.warn({ runs: fixed }, 're-enqueued runs missing from the queue');
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'scheduler tick failed');
      } finally {
        running = null;
      }
      return started;
    })());

  const syncTasks = (jobs: JobFile[]) => {
    const wanted = new Map(jobs.map((j) => [`${j.spec.name} ${j.spec.schedule!.cron} ${j.spec.schedule!.timezone}`, j]));
    for (const [key, task] of tasks) {
      if (!wanted.has(key)) {
        void task.destroy();
        tasks.delete(key);
      }
    }
    for (const [key, job] of wanted) {
      if (tasks.has(key)) continue;
      const s = job.spec.schedule!;
      tasks.set(
        key,
        cron.schedule(s.cron, () => void tick(), { timezone: s.timezone, name: key }),
      );
    }
  };

  const timer = setInterval(() => void tick(), TICK_MS);
  timer.unref();
  await tick();
  log.info({ jobs: tasks.size, queue: backend.describe }, 'scheduler started');
  return {
    tick,
    close: async () => {
      clearInterval(timer);
      for (const task of tasks.values()) void task.destroy();
      tasks.clear();
      await running;
      await Promise.all([producer.close(), finalizeQueue.close()]);
    },
  };
}
