-- Challengers: up to 3 more models a job scores in the same pass as its champion. The models a
-- run scores, pinned at plan: slot 0 is the champion (the same model as runs.model_*), slots
-- 1..3 the challengers in the order the job lists them.
CREATE TABLE prescore.run_models (
  run_id         bigint      NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  slot           smallint    NOT NULL CHECK (slot BETWEEN 0 AND 3),
  ref            text        NOT NULL,   -- as the job file names it: "churn@challenger"
  model_name     text        NOT NULL,
  model_version  integer     NOT NULL,
  model_sha256   text        NOT NULL,
  rows_written   bigint      NOT NULL DEFAULT 0,
  rows_rejected  bigint      NOT NULL DEFAULT 0,   -- rows this model alone rejected (non-finite output)
  PRIMARY KEY (run_id, slot),
  FOREIGN KEY (model_name, model_version) REFERENCES prescore.models (name, version)
);

-- Challenger predictions: like prescore.predictions, one list partition per run
-- (prescore.challenger_predictions_r<id>), loaded in the chunk's transaction with the champion's
-- rows, indexed on (key, slot) and attached in the same publish transaction. The champion's
-- rows stay in prescore.predictions, so champion reads are unchanged.
CREATE TABLE prescore.challenger_predictions (
  run_id   bigint   NOT NULL,
  slot     smallint NOT NULL,
  key      text     COLLATE "C" NOT NULL,
  score    double precision,
  label    text,
  outputs  double precision[]
) PARTITION BY LIST (run_id);

-- Rows the champion scored but a challenger could not (its output was NaN or infinite). Rows no
-- model could score (bad features) are in prescore.rejects, once, for every model.
CREATE TABLE prescore.challenger_rejects (
  run_id  bigint   NOT NULL REFERENCES prescore.runs (id) ON DELETE CASCADE,
  slot    smallint NOT NULL,
  key     text,
  reason  text     NOT NULL
);
CREATE INDEX challenger_rejects_run_key ON prescore.challenger_rejects (run_id, slot, key);
