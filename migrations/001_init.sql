-- Models: the exact ONNX bytes, so any machine loads the same model.
CREATE TABLE prescore.models (
  name        text        NOT NULL,
  version     integer     NOT NULL CHECK (version > 0),
  sha256      text        NOT NULL,
  onnx        bytea       NOT NULL,
  signature   jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

CREATE TABLE prescore.model_aliases (
  name        text        NOT NULL,
  alias       text        NOT NULL,
  version     integer     NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, alias),
  FOREIGN KEY (name, version) REFERENCES prescore.models (name, version)
);

CREATE TABLE prescore.runs (
  id             bigserial   PRIMARY KEY,
  job            text        NOT NULL,
  date           date        NOT NULL,
  status         text        NOT NULL CHECK (status IN
                   ('running', 'finalizing', 'published', 'superseded', 'failed', 'cancelled')),
  trigger        text        NOT NULL DEFAULT 'cli',
  model_name     text        NOT NULL,
  model_version  integer     NOT NULL,
  model_sha256   text        NOT NULL,
  spec           jsonb       NOT NULL,
  rows_planned   bigint      NOT NULL DEFAULT 0,
  rows_read      bigint      NOT NULL DEFAULT 0,
  rows_written   bigint      NOT NULL DEFAULT 0,
  rows_rejected  bigint      NOT NULL DEFAULT 0,
  chunks         integer     NOT NULL DEFAULT 0,
  error          text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  started_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz,
  published_at   timestamptz,
  heartbeat_at   timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (model_name, model_version) REFERENCES prescore.models (name, version)
);
-- Invariant 3: one active run per (job, date), whoever triggers it.
CREATE UNIQUE INDEX runs_one_active ON prescore.runs (job, date) WHERE status IN ('running', 'finalizing');
CREATE INDEX runs_job_date ON prescore.runs (job, date DESC, id DESC);

CREATE TABLE prescore.run_chunks (
  run_id         bigint      NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  chunk_no       integer     NOT NULL,
  lo             text,            -- inclusive lower key bound (NULL: unbounded), as text
  hi             text,            -- exclusive upper key bound (NULL: unbounded)
  rows_planned   bigint      NOT NULL,
  status         text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  rows_read      bigint      NOT NULL DEFAULT 0,
  rows_written   bigint      NOT NULL DEFAULT 0,
  rows_rejected  bigint      NOT NULL DEFAULT 0,
  attempts       integer     NOT NULL DEFAULT 0,
  stats          jsonb,           -- per-feature count/nulls/sum/sumSq/min/max of this chunk's input
  error          text,
  finished_at    timestamptz,
  PRIMARY KEY (run_id, chunk_no)
);

-- Rows that could not be scored, one per source row, with the reason.
CREATE TABLE prescore.rejects (
  run_id  bigint NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  key     text,                   -- NULL when the source row's key itself is NULL
  reason  text   NOT NULL
);
CREATE INDEX rejects_run ON prescore.rejects (run_id);

-- Per-feature statistics of each run's input, for drift checks.
CREATE TABLE prescore.feature_stats (
  run_id   bigint           NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  feature  text             NOT NULL,
  count    bigint           NOT NULL,
  nulls    bigint           NOT NULL,
  mean     double precision,
  stddev   double precision,
  min      double precision,
  max      double precision,
  PRIMARY KEY (run_id, feature)
);

-- The serving pointer: which run answers for (job, date). Publishing swaps it in one transaction.
CREATE TABLE prescore.serving (
  job           text        NOT NULL,
  date          date        NOT NULL,
  run_id        bigint      NOT NULL REFERENCES prescore.runs (id),
  published_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job, date)
);

-- Predictions: one list partition per run. A run loads its own table with COPY and no index,
-- builds a unique index on key, then attaches it as a partition when it publishes; old runs
-- drop in O(1). Lookups name the run (WHERE run_id = $1 AND key = ...), so the planner prunes
-- to one partition and uses its key index; the parent needs no index of its own.
-- Keys compare bytewise (COLLATE "C"): exact, and the index builds twice as fast as under a
-- linguistic collation.
CREATE TABLE prescore.predictions (
  run_id   bigint NOT NULL,
  key      text   COLLATE "C" NOT NULL,
  score    double precision,
  label    text,
  outputs  double precision[]
) PARTITION BY LIST (run_id);
