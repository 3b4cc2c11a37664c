-- Rollbacks: `prescore runs rollback` points a (job, date) back at an older kept run. Each one
-- is recorded here, in the transaction that swaps the pointer: who, when, from which run to
-- which, and why.
CREATE TABLE prescore.rollbacks (
  id           bigserial   PRIMARY KEY,
  job          text        NOT NULL,
  date         date        NOT NULL,
  from_run_id  bigint      NOT NULL REFERENCES prescore.runs (id),
  to_run_id    bigint      NOT NULL REFERENCES prescore.runs (id),
  by           text        NOT NULL,
  reason       text,
  at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollbacks_job_date ON prescore.rollbacks (job, date, id DESC);

-- Set on the run a rollback moved away from, cleared when a rollback makes it serve again:
-- retention (keepRuns) drops such runs before any other kept run of their date.
ALTER TABLE prescore.runs ADD COLUMN rolled_back_at timestamptz;
