-- What the scheduler keeps per job beyond its file. first_seen_at: when a scheduler first saw
-- the job scheduled (a new job owes no dates from before it; NULL until a scheduler sees it).
-- paused: set by `prescore jobs pause`, read by every scheduler replica at fire time;
-- resumed_at: the fires before it are not caught up unless the job says catchUp: true.
CREATE TABLE prescore.job_schedules (
  job            text        PRIMARY KEY,
  first_seen_at  timestamptz,
  paused         boolean     NOT NULL DEFAULT false,
  paused_at      timestamptz,
  resumed_at     timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
