-- Drift and quality gates: a run that breaks a blocking gate is held (not published) until
-- someone approves or rejects it.
ALTER TABLE prescore.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE prescore.runs ADD CONSTRAINT runs_status_check CHECK (status IN
  ('running', 'finalizing', 'published', 'superseded', 'failed', 'cancelled', 'held', 'rejected'));
ALTER TABLE prescore.runs
  ADD COLUMN held_reason     text,
  ADD COLUMN reviewed_by     text,
  ADD COLUMN reviewed_at     timestamptz,
  ADD COLUMN review_reason   text;

-- A GET of a rejected key says why (one probe by run and key).
CREATE INDEX rejects_run_key ON prescore.rejects (run_id, key);

-- A chunk's profiles (profile/codec.ts), committed with its rows; merged at finalize.
ALTER TABLE prescore.run_chunks ADD COLUMN profile bytea;

-- Profiles: per column (feature, stored output, label) the count, NULLs, moments, min/max and
-- a histogram on a fixed grid, all exactly mergeable. A run's own profile (run_id), or a named
-- baseline made from training data (`prescore profiles create`).
CREATE TABLE prescore.profiles (
  id          bigserial   PRIMARY KEY,
  name        text        UNIQUE,
  run_id      bigint      UNIQUE REFERENCES prescore.runs (id) ON DELETE CASCADE,
  job         text        NOT NULL,
  source      text        NOT NULL,
  rows        bigint      NOT NULL,
  columns     jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((name IS NULL) <> (run_id IS NULL))
);

-- A run's drift against its baseline and the gates it broke, made before it is published.
CREATE TABLE prescore.run_reports (
  run_id      bigint      PRIMARY KEY REFERENCES prescore.runs (id) ON DELETE CASCADE,
  baseline    jsonb       NOT NULL,
  report      jsonb       NOT NULL,
  breaches    jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
