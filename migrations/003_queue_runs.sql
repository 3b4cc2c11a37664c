-- Runs executed through the queue (BullMQ) rather than in one process.
ALTER TABLE prescore.runs
  ADD COLUMN mode        text        NOT NULL DEFAULT 'local' CHECK (mode IN ('local', 'queue')),
  -- Bumped by `runs retry`: queue job ids carry it, so a retry enqueues fresh jobs.
  ADD COLUMN attempt     integer     NOT NULL DEFAULT 1,
  -- Set once the run's flow is in the queue; a run planned but never enqueued (its process
  -- died in between) is enqueued by the reconciler of any worker or scheduler.
  ADD COLUMN enqueued_at timestamptz;
