-- Layered incremental runs. An incremental run of a job without challengers stores only the
-- rows that differ from its base: the predictions it scored (and those of an earlier layer on
-- the same base it carried), and reads every other key through to its base run, a run stored
-- in full. A layer's base is always a full run, so a read goes through one level at most.
ALTER TABLE prescore.runs
  -- The full run this run reads through to; NULL for a run that holds all its rows.
  ADD COLUMN base_run_id  bigint,
  -- Set when retention would have dropped this run but a layer still reads through to it: it
  -- goes with the last such layer.
  ADD COLUMN kept_as_base boolean NOT NULL DEFAULT false,
  -- When retention took the run's tables (set, with the run's row locked, before they go): a
  -- plan that would read through to the run sees it and does not.
  ADD COLUMN dropped_at   timestamptz;

CREATE INDEX runs_base_run_id ON prescore.runs (base_run_id) WHERE base_run_id IS NOT NULL;

-- The keys of the base run's predictions a layer does not read through: rescored, rejected
-- or gone from the source in this run (or in the layer it carried from).
CREATE TABLE prescore.layer_masks (
  run_id bigint NOT NULL,
  key    text COLLATE "C" NOT NULL,
  PRIMARY KEY (run_id, key)
);
