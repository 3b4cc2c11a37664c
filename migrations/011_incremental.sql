-- Incremental runs (a job's `incremental`): a run scores only the rows that changed since the
-- previous published run of its job and carries the others over from that run's tables, in its
-- plan transaction. The carried rows are one done chunk of the run (run_chunks.carried), so the
-- run's counts still add up (read = written + rejected) and the carry commits exactly once.
ALTER TABLE prescore.runs
  -- Of rows_read: the rows carried over from the base run (predictions and rejects), not scored.
  ADD COLUMN rows_carried bigint NOT NULL DEFAULT 0,
  -- How the run was planned: {"mode", "baseRunId", "full", "reason", "watermark", "changed", "gone"}.
  ADD COLUMN incremental  jsonb;

ALTER TABLE prescore.run_chunks
  ADD COLUMN carried boolean NOT NULL DEFAULT false;
