-- Late arrivals (serving.onMiss "enqueue"): a key the served run lacks, scored later by a queue
-- worker with the run's pinned model and stored here, by run, so the next read answers it
-- ("source": "late"). `rejected` is NULL for a score, else why there is none: the reason a run
-- would reject the row, or that the source has no row for the key on the run's date (such a
-- row is checked again after a while). Rows go with their run (retention deletes them when it
-- drops the run's predictions); a publish of the same date carries the previous run's rows to
-- the new run for the keys the new run lacks, when both runs pinned the same model version.
CREATE TABLE prescore.late_predictions (
  run_id         bigint      NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  key            text        COLLATE "C" NOT NULL,
  score          double precision,
  label          text,
  outputs        double precision[],
  rejected       text,
  absent         boolean     NOT NULL DEFAULT false,   -- rejected because the source has no row for the key
  model_name     text        NOT NULL,
  model_version  integer     NOT NULL,
  scored_at      timestamptz NOT NULL DEFAULT now(),
  carried_from   bigint,                               -- the run it was scored for, when carried over by a publish
  PRIMARY KEY (run_id, key)
);
